"""Scoring samples, per-benchmark metrics, and the ``results.json`` / markdown table files.

A sample is correct when its reward score is not None and >= 1.0 (the rewards score 1.0 or
0.0; ``None`` means the gold answer could not be checked, counted in ``unscorable``).
maj@K votes over the reward's extracted answer, ``RewardResult.info["extracted"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flexent.errors import UserError, json_error
from flexent.evaluation.metrics import (
    MajorityVote,
    bootstrap_interval,
    maj_at_k,
    majority_vote,
    mean_at_k,
    mean_pass_at_k,
    pass_at_k,
)

RESULTS_FORMAT = "flexent-eval/1"


@dataclass
class ProblemResult:
    """One problem's samples: ``n`` drawn, ``correct`` of them right (pass@k needs only these)."""

    index: int
    answer: str
    n: int
    correct: int
    unscorable: int
    scores: list[float | None]
    extracted: list[str | None]
    majority: str | None
    majority_votes: int
    maj_correct: bool
    completions: list[str] | None = field(default=None)


def score_problem(
    index: int, example: Mapping[str, Any], completions: Sequence[str], reward: Any
) -> ProblemResult:
    """Score a problem's completions with ``reward.score`` and take the majority vote."""
    results = [reward.score(c, example) for c in completions]
    scores = [None if r.score is None else float(r.score) for r in results]
    verdicts = [s is not None and s >= 1.0 for s in scores]
    extracted = [_as_answer(r.info.get("extracted")) for r in results]
    vote = majority_vote(extracted, verdicts)
    return ProblemResult(
        index=index,
        answer=str(example.get("answer", "")),
        n=len(completions),
        correct=sum(verdicts),
        unscorable=sum(s is None for s in scores),
        scores=scores,
        extracted=extracted,
        majority=None if vote.answer is None else str(vote.answer),
        majority_votes=vote.votes,
        maj_correct=vote.correct,
    )


def _as_answer(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def benchmark_metrics(problems: Sequence[ProblemResult], ks: Sequence[int]) -> dict[str, float]:
    """``mean@K``, ``pass@k`` for each k and ``maj@K`` (K = samples per problem), in [0, 1]."""
    if not problems:
        raise ValueError("benchmark_metrics: no problems")
    samples = {p.n for p in problems}
    if len(samples) != 1:
        raise ValueError(f"benchmark_metrics: problems have different sample counts {samples}")
    (k_total,) = samples
    counts = [(p.n, p.correct) for p in problems]
    metrics = {f"mean@{k_total}": mean_at_k(counts)}
    for k in ks:
        metrics[f"pass@{k}"] = mean_pass_at_k(counts, k)
    votes = [MajorityVote(p.majority, p.majority_votes, p.maj_correct) for p in problems]
    metrics[f"maj@{k_total}"] = maj_at_k(votes)
    return metrics


def metric_intervals(
    problems: Sequence[ProblemResult], ks: Sequence[int], *, draws: int = 2000
) -> dict[str, list[float]]:
    """95 % percentile-bootstrap intervals over problems of ``mean@K``, each ``pass@k`` and
    ``maj@K`` (the per-problem values resampled with replacement, fixed RNG)."""
    k_total = problems[0].n
    per_problem: dict[str, list[float]] = {f"mean@{k_total}": [p.correct / p.n for p in problems]}
    for k in ks:
        per_problem[f"pass@{k}"] = [pass_at_k(p.n, p.correct, k) for p in problems]
    per_problem[f"maj@{k_total}"] = [float(p.maj_correct) for p in problems]
    return {m: list(bootstrap_interval(v, draws=draws)) for m, v in per_problem.items()}


def average_metrics(per_benchmark: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean over benchmarks of each metric that every benchmark reports."""
    if not per_benchmark:
        return {}
    tables = list(per_benchmark.values())
    keys = [k for k in tables[0] if all(k in t for t in tables)]
    return {k: sum(t[k] for t in tables) / len(tables) for k in keys}


def build_results(
    benchmarks: Mapping[str, Mapping[str, Any]],
    *,
    model: str,
    backend: str,
    samples: int,
    ks: Sequence[int],
    sampling: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``results.json`` object. ``benchmarks[name]`` holds ``source``, ``reward`` and
    ``problems`` (a list of :class:`ProblemResult`), optionally ``reward_params`` and (a
    procedural task) ``task_params``; metrics are computed here."""
    out: dict[str, Any] = {}
    for name, bench in benchmarks.items():
        problems = bench["problems"]
        out[name] = {
            "source": str(bench["source"]),
            "reward": str(bench["reward"]),
            "reward_params": dict(bench.get("reward_params", {})),
            **({"task_params": dict(bench["task_params"])} if "task_params" in bench else {}),
            "num_problems": len(problems),
            "metrics": benchmark_metrics(problems, ks),
            "intervals": metric_intervals(problems, ks),
            "problems": [_problem_dict(p) for p in problems],
        }
    return {
        "format": RESULTS_FORMAT,
        "model": model,
        "backend": backend,
        "samples": samples,
        "ks": list(ks),
        "sampling": dict(sampling),
        "benchmarks": out,
        "average": average_metrics({n: b["metrics"] for n, b in out.items()}),
    }


def _problem_dict(p: ProblemResult) -> dict[str, Any]:
    d = asdict(p)
    if d["completions"] is None:
        del d["completions"]
    return d


def results_table(results: Mapping[str, Any]) -> str:
    """A markdown table: one row per benchmark plus the average, metrics in percent."""
    benches = results["benchmarks"]
    columns = list(results["average"]) or list(next(iter(benches.values()))["metrics"])
    head = "| benchmark | problems | " + " | ".join(columns) + " |"
    rule = "|---|---:|" + "---:|" * len(columns)
    rows = [head, rule]
    for name, bench in benches.items():
        cells = [_pct(bench["metrics"].get(c)) for c in columns]
        rows.append(f"| {name} | {bench['num_problems']} | " + " | ".join(cells) + " |")
    if len(benches) > 1:
        cells = [_pct(results["average"].get(c)) for c in columns]
        rows.append("| **average** | | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def write_results(results: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` (the table) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    header = (
        f"# Evaluation of `{results['model']}`\n\n"
        f"{results['samples']} samples per problem, backend {results['backend']}, sampling "
        + ", ".join(f"{k}={v}" for k, v in results["sampling"].items())
        + ". Values in percent; the average is the unweighted mean over benchmarks.\n\n"
    )
    md_path.write_text(header + results_table(results) + intervals_table(results), encoding="utf-8")
    return json_path, md_path


def intervals_table(results: Mapping[str, Any]) -> str:
    """The 95 % bootstrap intervals over problems, in percent, one row per benchmark."""
    benches = {n: b for n, b in results["benchmarks"].items() if b.get("intervals")}
    if not benches:
        return ""
    columns = list(next(iter(benches.values()))["intervals"])
    rows = [
        "\n95 % intervals (percentile bootstrap over problems, 2,000 draws):\n",
        "| benchmark | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, bench in benches.items():
        cells = [
            f"{100 * lo:.1f}-{100 * hi:.1f}" for lo, hi in (bench["intervals"][c] for c in columns)
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


class ResultsError(UserError):
    """A ``results.json`` that is missing or not one of ``flexent eval``'s; names the file."""


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`write_results`, checking its shape."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"eval results file not found: {file}") from None
    except json.JSONDecodeError as err:
        raise ResultsError(json_error(file, err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"{file}: cannot read it as JSON text ({err})") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ResultsError(f"{file}: not a flexent eval results file (format {RESULTS_FORMAT!r})")
    for name, bench in data.get("benchmarks", {}).items():
        for i, p in enumerate(bench.get("problems", []), start=1):
            if not (isinstance(p.get("n"), int) and isinstance(p.get("correct"), int)):
                raise ResultsError(
                    f"{file}: benchmark {name!r} problem {i} lacks integer n/correct"
                )
    return data

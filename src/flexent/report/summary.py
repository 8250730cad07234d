"""The summary table and ``report.md`` of :func:`flexent.report.make_report`.

Columns, per run:

- *final reward*: mean of ``reward/mean`` over the last 10% of logged steps (at least one).
- *eval acc*: mean@K averaged over benchmarks from ``eval/results.json``; else
  ``final.accuracy`` of the trainer's ``eval.json``; else empty.
- *entropy @ p%*: ``entropy/mean`` at the logged step nearest to p% of the last step.
- *clip high / low*: mean of ``clip/frac_high`` / ``clip/frac_low`` over all logged steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flexent.report.runs import Run

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def tail_mean(values: Sequence[float], fraction: float = 0.1) -> float | None:
    """Mean of the last ``fraction`` of ``values`` (at least one value); None when empty.

    >>> tail_mean([0.0] * 18 + [1.0, 3.0])
    2.0
    """
    if not values:
        return None
    n = max(1, round(fraction * len(values)))
    tail = values[-n:]
    return sum(tail) / len(tail)


def value_at_fraction(steps: Sequence[float], values: Sequence[float], p: float) -> float | None:
    """The value at the logged step nearest to ``p * last step`` (earlier step on ties).

    >>> value_at_fraction([1, 2, 3, 4], [10.0, 20.0, 30.0, 40.0], 0.5)
    20.0
    """
    if not steps:
        return None
    goal = p * steps[-1]
    i = min(range(len(steps)), key=lambda j: (abs(steps[j] - goal), steps[j]))
    return values[i]


def eval_accuracy(run: Run) -> tuple[float | None, str]:
    """(accuracy, where it came from) for the summary table."""
    if run.eval_results is not None:
        mean = [v for k, v in run.eval_results["average"].items() if k.startswith("mean@")]
        if mean:
            return mean[0], "eval/results.json mean@K"
    final = (run.train_eval or {}).get("final")
    if isinstance(final, dict) and isinstance(final.get("accuracy"), int | float):
        return float(final["accuracy"]), "eval.json final.accuracy"
    return None, ""


def summary_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        steps, entropy = run.series("entropy/mean")
        acc, _ = eval_accuracy(run)
        row = [
            run.name,
            run.strategy or "",
            str(int(run.records[-1]["step"])) if run.records else "0",
            _fmt(tail_mean(run.series("reward/mean")[1])),
            _fmt(acc),
        ]
        row += [_fmt(value_at_fraction(steps, entropy, p)) for p in FRACTIONS]
        row += [_fmt(tail_mean(run.series(k)[1], 1.0)) for k in ("clip/frac_high", "clip/frac_low")]
        rows.append(row)
    return rows


HEADER = (
    ["run", "strategy", "steps", "final reward", "eval acc"]
    + [f"entropy @{int(100 * p)}%" for p in FRACTIONS]
    + ["clip high (mean)", "clip low (mean)"]
)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report_md(
    out_dir: Path,
    runs: Sequence[Run],
    figures: Sequence[tuple[str, Path]],
    notes: Sequence[str],
) -> Path:
    """Write ``report.md``: summary table, the figures (relative links) and the notes."""
    parts = ["# flexent training report", ""]
    parts.append("Runs: " + ", ".join(f"`{r.path}`" for r in runs) + ".")
    parts += ["", "## Summary", "", markdown_table(HEADER, summary_rows(runs))]
    sources = {r.name: eval_accuracy(r)[1] for r in runs if eval_accuracy(r)[1]}
    if sources:
        parts.append("eval acc source: " + "; ".join(f"{n}: {s}" for n, s in sources.items()))
        parts.append("")
    parts.append(
        "final reward = mean `reward/mean` over the last 10% of logged steps; entropy (nats) at "
        "the logged step nearest to 25/50/75/100% of the last step; clip fractions averaged "
        "over all logged steps."
    )
    parts += ["", "## Figures", ""]
    for title, path in figures:
        parts += [f"### {title}", "", f"![{title}]({path.name})", ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path

"""The sweep report: per-arm numbers over seeds with 95 % intervals, figures with seed spread.

Per run (``flexent.report.load_run``):

- entropy at 25/50/75/100 % of training: mean of ``entropy/mean`` over a window of
  ``max(1, round(0.05 T))`` logged steps ending at that point (T = logged steps), so one noisy
  step does not decide it;
- early / final reward: mean ``reward/mean`` over the first 25 % / last 10 % of steps;
- clip fractions: mean ``clip/frac_high`` / ``clip/frac_low`` over all steps;
- held-out: ``eval.json`` of the run (``final``: accuracy = first sample correct, pass@k);
  ``step-N`` entries (``evaluation.steps``) give mid-training pass@k;
- ``target`` runs: the last ``control/tracking_error``.

Across an arm's seeds: the mean with a 95 % Student-t interval. Against the spec's ``baseline``
arm: the ratio of seed means with a 95 % Welch t-interval on the log ratio (entropy) and the
difference of means with a 95 % Welch interval (reward, accuracy, pass@k).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexent.report import Run, load_run
from flexent.report.summary import markdown_table
from flexent.sweep.spec import SweepSpec
from flexent.sweep.stats import Interval, diff_interval, mean_interval, ratio_interval

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class ArmResult:
    """An arm's per-seed values (``values[name] = [one per seed]``) and the seeds' runs."""

    name: str
    runs: list[Run] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def interval(self, key: str) -> Interval:
        return mean_interval(self.values.get(key, []))


def window_mean(values: Sequence[float], p: float, frac: float = 0.05) -> float:
    """Mean of the ``max(1, round(frac * n))`` values ending at position ``round(p * n)``.

    >>> window_mean([0.0] * 10 + [1.0] * 10, 1.0), window_mean(list(range(20)), 0.5)
    (1.0, 9.0)
    """
    n = len(values)
    if n == 0:
        return math.nan
    end = max(1, round(p * n))
    width = max(1, round(frac * n))
    window = values[max(0, end - width) : end]
    return sum(window) / len(window)


def training_order(stages: Iterable[str]) -> list[str]:
    """Evaluation stage names in training order: ``start``, ``step-N`` by N, ``final``.

    >>> training_order(["final", "step-64", "start", "step-192"])
    ['start', 'step-64', 'step-192', 'final']
    """
    found = set(stages)
    steps = sorted((s for s in found if s.startswith("step-")), key=lambda s: int(s[5:]))
    rest = sorted(found - {"start", "final", *steps})
    return [s for s in ("start", *steps, "final") if s in found] + rest


def _span_mean(values: Sequence[float], start: float, stop: float) -> float:
    part = values[int(start * len(values)) : max(int(start * len(values)) + 1,
                                                 math.ceil(stop * len(values)))]  # fmt: skip
    return sum(part) / len(part) if part else math.nan


def run_values(run: Run) -> dict[str, float]:
    """The per-run numbers of the module docstring, by name."""
    out: dict[str, float] = {}
    entropy = run.series("entropy/mean")[1]
    for p in FRACTIONS:
        out[f"entropy@{int(100 * p)}%"] = window_mean(entropy, p)
    reward = run.series("reward/mean")[1]
    out["reward early"] = _span_mean(reward, 0.0, 0.25)
    out["reward final"] = _span_mean(reward, 0.9, 1.0)
    for key in ("clip/frac_high", "clip/frac_low"):
        values = run.series(key)[1]
        out[key] = sum(values) / len(values) if values else math.nan
    tracking = run.series("control/tracking_error")[1]
    if tracking:
        out["tracking error"] = tracking[-1]
    for stage, result in (run.train_eval or {}).items():
        if isinstance(result, dict):
            out.update(_eval_values(stage, result))
    return out


def _eval_values(stage: str, result: dict[str, Any]) -> dict[str, float]:
    out = {}
    if isinstance(result.get("accuracy"), (int, float)):
        out[f"{stage} accuracy"] = float(result["accuracy"])
    for key, value in (result.get("metrics") or {}).items():
        if key.startswith(("pass@", "mean@")) and isinstance(value, (int, float)):
            out[f"{stage} {key}"] = float(value)
    return out


def collect(spec: SweepSpec) -> tuple[list[ArmResult], list[str]]:
    """Every arm's finished runs and values; notes name the runs that are missing."""
    from flexent.sweep.runner import run_state

    arms: dict[str, ArmResult] = {a.name: ArmResult(a.name) for a in spec.arms()}
    notes = []
    for run in spec.runs():
        if run_state(run) != "done":
            notes.append(f"`{run.name}` is not finished: left out")
            continue
        loaded = load_run(run.run_dir, name=f"{run.arm}/seed{run.seed}")
        arm = arms[run.arm]
        arm.runs.append(loaded)
        for key, value in run_values(loaded).items():
            arm.values.setdefault(key, []).append(value)
    return list(arms.values()), notes


def _columns(arms: Sequence[ArmResult]) -> list[str]:
    keys: list[str] = []
    for arm in arms:
        keys += [k for k in arm.values if k not in keys]
    return keys


def arm_table(arms: Sequence[ArmResult]) -> str:
    """One row per arm: each value's seed mean [95 % t-interval]."""
    keys = _columns(arms)
    rows = [[a.name, str(len(a.runs))] + [a.interval(k).fmt(3) for k in keys] for a in arms]
    return markdown_table(["arm", "seeds", *keys], rows)


def baseline_table(arms: Sequence[ArmResult], baselines: dict[str, str]) -> str:
    """Each arm against its baseline arm (``baselines[arm]``): entropy ratios, differences of
    reward and held-out results."""
    by_name = {a.name: a for a in arms}
    keys = _columns(arms)
    rows = []
    for arm in arms:
        base = by_name.get(baselines.get(arm.name, ""))
        if base is None or base is arm:
            continue
        row = [arm.name, base.name]
        for key in keys:
            ours, theirs = arm.values.get(key, []), base.values.get(key, [])
            compare: Callable[..., Interval] = (
                ratio_interval if key.startswith("entropy") else diff_interval
            )
            row.append(compare(ours, theirs).fmt(3))
        rows.append(row)
    header = ["arm", "vs"] + [f"{k} {'ratio' if k.startswith('entropy') else 'diff'}" for k in keys]
    return markdown_table(header, rows)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (reports get copied
    into docs), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_sweep_report(
    spec: SweepSpec, out_dir: Path | None = None, *, arms: Sequence[str] | None = None,
    baseline: str | None = None,
) -> Path:  # fmt: skip
    """Figures, ``report.md`` and ``summary.json`` of the sweep in ``<out>/report`` (or
    ``out_dir``); ``arms`` keeps only those arms (in that order), an unknown name is an error;
    ``baseline`` (an arm's name) compares every arm shown with that arm instead of the spec's
    baseline."""
    from flexent.sweep.figures import plot_sweep_figures

    out = out_dir or spec.out / "report"
    results, notes = collect(spec)
    if baseline is not None and baseline not in {a.name for a in results}:
        names = [a.name for a in results]
        raise ValueError(f"--baseline: unknown arm {baseline!r}; the sweep has {names}")
    if arms:
        by_name = {a.name: a for a in results}
        unknown = [a for a in arms if a not in by_name]
        if unknown:
            raise ValueError(f"--arms: unknown arm(s) {unknown}; the sweep has {list(by_name)}")
        results = [by_name[a] for a in arms]
        notes = [n for n in notes if any(f"`{a}/" in n for a in arms)]
    done = [a for a in results if a.runs]
    if baseline is not None and baseline not in {a.name for a in done}:
        why = "has no finished run" if arms is None or baseline in arms else "is not in --arms"
        raise ValueError(f"--baseline: arm {baseline!r} {why}")
    out.mkdir(parents=True, exist_ok=True)
    if not done:
        raise ValueError(f"sweep {spec.name!r}: no finished run in {spec.out}")
    figures = plot_sweep_figures(done, out)
    seeds = ", ".join(map(str, spec.seeds))
    parts = [
        f"# Sweep `{spec.name}`",
        "",
        f"Spec: `{_shown(spec.path)}`; base: `{spec.base}`; seeds: {seeds}; runs in "
        f"`{_shown(spec.out)}`."
        + (f" Arms shown: {', '.join(f'`{a}`' for a in arms)}." if arms else ""),
        "",
        "## Per arm (seed mean [95 % t-interval])",
        "",
        arm_table(done),
    ]
    baselines = {a.name: spec.baseline_of(a) or "" for a in spec.arms()}
    if baseline is not None:
        baselines = {a.name: baseline for a in spec.arms()}
    if baseline or spec.baseline:
        parts += [
            f"## Against `{baseline or spec.baseline}`",
            "",
            "Entropy: ratio of seed means [95 % Welch t-interval on the log ratio, delta "
            "method]; the rest: difference of seed means [95 % Welch t-interval].",
            "",
            baseline_table(done, baselines),
        ]
    parts += [
        "Entropy at p %: mean `entropy/mean` over the 5 % of logged steps ending there; reward "
        "early / final: mean `reward/mean` over the first 25 % / last 10 % of steps; clip "
        "fractions: mean over all steps; `final` / `step-N`: the run's held-out evaluation "
        "(`eval.json`; accuracy = first sample correct).",
        "",
        "## Figures",
        "",
        "Lines: mean over seeds; bands: min-max over seeds (curves smoothed over 2 % of steps).",
        "",
    ]
    parts += [f"![{p.stem}]({p.name})" for p in figures]
    if notes:
        parts += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    path = out / "report.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    summary = {a.name: {"seeds": len(a.runs), "values": a.values} for a in done}
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return path

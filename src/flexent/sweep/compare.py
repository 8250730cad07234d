"""The sweep report: the arms compared over seeds with 95 % intervals, and figures with the
seeds' spread (``<out>/report``: ``report.md``, ``summary.json``, PNGs).

The per-run numbers are :mod:`.results`'s. Across an arm's seeds: the mean with a 95 %
Student-t interval. Against the spec's ``baseline`` arm: the ratio of seed means with a 95 %
Welch t-interval on the log ratio (entropy) and the difference of means with a 95 % Welch
interval (reward, accuracy, pass@k).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from flexent.report.summary import markdown_table
from flexent.sweep.figures import plot_sweep_figures
from flexent.sweep.results import ArmResult, collect
from flexent.sweep.spec import SweepSpec
from flexent.sweep.stats import Interval, diff_interval, ratio_interval


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
    if not done:
        raise ValueError(f"sweep {spec.name!r}: no finished run in {spec.out}")
    out.mkdir(parents=True, exist_ok=True)
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

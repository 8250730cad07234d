"""``summary.md`` of a ``flexent demo`` run: the arms side by side, from :mod:`flexent.sweep`."""

from __future__ import annotations

import math
import time
from pathlib import Path

from flexent.report.summary import markdown_table
from flexent.sweep.results import FRACTIONS, ArmResult, collect, training_order
from flexent.sweep.spec import SweepSpec
from flexent.sweep.stats import mean_interval, ratio_interval

# figures of the sweep report shown in the summary, in this order; of two alternatives the
# first one present (the exact first-order term when the runs log it)
FIGURES = (
    ("entropy",),
    ("pass_at_k",),
    ("region_pred_dH_full_clipped", "region_pred_dH_clipped"),
    ("clip_fraction",),
    ("reward",),
)


def _fmt(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """The seed mean (NaNs left out) without its interval: the demo has one seed."""
    mean = mean_interval(values).value
    return "" if math.isnan(mean) else f"{scale * mean:.{digits}f}"


def _stages(arm: ArmResult) -> list[str]:
    """Evaluation stages in training order: start, step-N ..., final."""
    return training_order(k.split(" ")[0] for k in arm.values if " pass@" in k or " mean@" in k)


def _eval_cells(arm: ArmResult, stages: list[str], metric: str) -> str:
    return " -> ".join(_fmt(arm.values.get(f"{s} {metric}", []), 100, 1) for s in stages)


def _row(arm: ArmResult, stages: list[str], n: int) -> list[str]:
    v = arm.values
    row = [arm.name]
    if stages:
        row += [_eval_cells(arm, stages, f"mean@{n}"), _eval_cells(arm, stages, f"pass@{n}")]
    row += [_fmt(v.get(f"entropy@{int(100 * p)}%", [])) for p in FRACTIONS]
    row += [_fmt(v.get(k, []), 100, 2) for k in ("clip/frac_high", "clip/frac_low")]
    return row


def _examples(arm: ArmResult) -> list[str]:
    final = (arm.runs[0].train_eval or {}).get("final", {})  # eval.json, read by load_run
    return [
        f"- {arm.name}: `{e['prompt']}` -> `{e['completion']}`" for e in final.get("examples", [])
    ]


def write_summary(spec: SweepSpec, *, elapsed_s: float, command: str) -> Path:
    """Write ``<run dir>/summary.md`` (the figures are the sweep report's, in ``report/``)."""
    arms, _ = collect(spec)
    arms = [a for a in arms if a.runs]
    base = next(a for a in arms if a.name == spec.baseline)
    stages = _stages(base)
    ns = sorted(int(k.split("@")[1]) for k in base.values if k.startswith("final mean@"))
    n = ns[-1] if ns else 1
    seeds = ", ".join(map(str, spec.seeds))
    header = ["arm"]
    if stages:
        header += [f"held-out mean@{n} (%)", f"held-out pass@{n} (%)"]
    header += [f"entropy @{int(100 * p)}%" for p in FRACTIONS] + ["clip high (%)", "clip low (%)"]
    held_out = (
        f"Held-out values at {', '.join(stages)} ({n} samples per problem)."
        if stages
        else "No held-out evaluation (evaluation.enabled is false)."
    )
    lines = [
        "# flexent demo summary",
        "",
        f"Command: `{command}`; wall time {elapsed_s:.0f} s on {time.strftime('%Y-%m-%d')} "
        "(this run: warm-up, arms and reports, without the environment's set-up; "
        "docs/training.md gives the measured range); one GRPO run per arm from the same "
        f"warm-up model, seed {seeds}, {len(base.runs[0].records)} optimizer steps each. "
        + held_out,
        "",
        markdown_table(header, [_row(a, stages, n) for a in arms]),
    ]
    for arm in arms:
        if arm is base:
            continue
        ratios = []
        for p in FRACTIONS:
            key = f"entropy@{int(100 * p)}%"
            ratio = ratio_interval(arm.values.get(key, []), base.values.get(key, [])).value
            if not math.isnan(ratio):
                ratios.append(f"{int(100 * p)} %: {ratio:.2f}x")
        if ratios:
            lines += [
                f"Entropy of `{arm.name}` relative to `{base.name}` at " + ", ".join(ratios) + ".",
                "",
            ]
    lines += [
        "One seed: this shows the direction of the effect on this setup, not its size; the "
        "effect measured over seeds, with intervals, and what holds of the paper's claims are in "
        "docs/replication.md. mean@n: share of correct samples; pass@n: problems solved by at "
        "least one of n samples (unbiased estimator). Entropy at p %: mean `entropy/mean` over "
        "the 5 % of steps ending there. Clip: mean share of tokens clipped per side.",
        "",
    ]
    for options in FIGURES:
        name = next((o for o in options if (spec.out / "report" / f"{o}.png").is_file()), None)
        if name is not None:
            lines += [f"![{name}](report/{name}.png)", ""]
    lines += ["All numbers and figures: [report/report.md](report/report.md).", ""]
    lines += ["Sample completions of the final models:", ""]
    for arm in arms:
        lines += _examples(arm)
    path = spec.out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path

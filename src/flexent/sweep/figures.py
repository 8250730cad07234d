"""Sweep figures: each arm's mean over seeds as a line, the seeds' min-max as a band.

The metric groups are :data:`flexent.report.figures.FIGURES` (the figures of ``flexent
report``); pass@k curves come from the runs' held-out evaluations (``eval.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flexent.report.figures import FIGURES, STEP_LABEL, FigureSpec, Panel, draw_grid, pass_at_k_axes
from flexent.sweep.results import ArmResult, training_order


def smooth(values: Sequence[float], width: int) -> list[float]:
    """Trailing moving average over ``width`` values (fewer at the start).

    >>> smooth([0.0, 2.0, 4.0, 6.0], 2)
    [0.0, 1.0, 3.0, 5.0]
    """
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def arm_curves(arm: ArmResult, key: str) -> tuple[list[float], list[list[float]]] | None:
    """Steps logged by every seed of ``arm`` for ``key``, and each seed's values there."""
    per_seed = [dict(zip(*run.series(key), strict=True)) for run in arm.runs]
    per_seed = [s for s in per_seed if s]
    if not per_seed:
        return None
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    if not steps:
        return None
    return steps, [[s[x] for x in steps] for s in per_seed]


def _draw(ax: Any, panel: Panel, arms: Sequence[ArmResult]) -> bool:
    drawn = False
    for arm in arms:
        curves = arm_curves(arm, panel.key)
        if curves is None:
            continue
        steps, seeds = curves
        width = max(1, round(0.02 * len(steps)))
        seeds = [smooth(s, width) for s in seeds]
        mean = [sum(col) / len(col) for col in zip(*seeds, strict=True)]
        lo = [min(col) for col in zip(*seeds, strict=True)]
        hi = [max(col) for col in zip(*seeds, strict=True)]
        (line,) = ax.plot(steps, mean, label=f"{arm.name} (n={len(seeds)})", linewidth=1.4)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
        drawn = True
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    return drawn


def _figure(spec: FigureSpec, arms: Sequence[ArmResult], out: Path) -> Path | None:
    panels = [p for p in spec.panels if any(arm_curves(a, p.key) for a in arms)]
    if not panels:
        return None
    return draw_grid(panels, lambda ax, panel: _draw(ax, panel, arms), out / f"{spec.name}.png",
                     title=f"{spec.title} (mean over seeds, min-max band)")  # fmt: skip


def _pass_at_k(arms: Sequence[ArmResult], out: Path) -> Path | None:
    stages = training_order(k.split(" ")[0] for a in arms for k in a.values if " pass@" in k)
    if not stages:
        return None

    def draw(ax: Any, stage: str) -> None:
        all_ks: set[int] = set()
        for arm in arms:
            ks = sorted(int(k.split("@")[1]) for k in arm.values if k.startswith(f"{stage} pass@"))
            if not ks:
                continue
            seeds = [arm.values[f"{stage} pass@{k}"] for k in ks]
            mean = [100 * sum(v) / len(v) for v in seeds]
            (line,) = ax.plot(ks, mean, marker="o", label=arm.name)
            ax.fill_between(ks, [100 * min(v) for v in seeds], [100 * max(v) for v in seeds],
                            color=line.get_color(), alpha=0.15, linewidth=0)  # fmt: skip
            all_ks.update(ks)
        pass_at_k_axes(ax, sorted(all_ks), f"held-out pass@k, {stage}")

    return draw_grid(stages, draw, out / "pass_at_k.png")


def plot_sweep_figures(arms: Sequence[ArmResult], out: Path) -> list[Path]:
    """Every figure of :data:`FIGURES` that some arm logs, plus pass@k; the written paths."""
    paths = [_figure(spec, arms, out) for spec in FIGURES]
    paths.append(_pass_at_k(arms, out))
    return [p for p in paths if p is not None]

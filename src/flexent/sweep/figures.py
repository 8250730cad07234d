"""Sweep figures: each arm's mean over seeds as a line, the seeds' min-max as a band.

The metric groups are :data:`flexent.report.figures.FIGURES` (the figures of ``flexent
report``); pass@k curves come from the runs' held-out evaluations (``eval.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flexent.report.figures import FIGURES, STEP_LABEL, FigureSpec, Panel, grid_shape, pyplot

if TYPE_CHECKING:
    from flexent.sweep.report import ArmResult


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
    plt = pyplot()
    rows, cols = grid_shape(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.5 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        _draw(ax, panel, arms)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"{spec.title} (mean over seeds, min-max band)")
    fig.tight_layout()
    path = out / f"{spec.name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pass_at_k(arms: Sequence[ArmResult], out: Path) -> Path | None:
    stages = sorted({k.split(" ")[0] for a in arms for k in a.values if " pass@" in k})
    if not stages:
        return None
    plt = pyplot()
    rows, cols = grid_shape(len(stages))
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.5 * rows), squeeze=False)
    for ax, stage in zip(axes.flat, stages, strict=False):
        for arm in arms:
            ks = sorted(int(k.split("@")[1]) for k in arm.values if k.startswith(f"{stage} pass@"))
            if not ks:
                continue
            seeds = [arm.values[f"{stage} pass@{k}"] for k in ks]
            mean = [100 * sum(v) / len(v) for v in seeds]
            (line,) = ax.plot(ks, mean, marker="o", label=arm.name)
            ax.fill_between(ks, [100 * min(v) for v in seeds], [100 * max(v) for v in seeds],
                            color=line.get_color(), alpha=0.15, linewidth=0)  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_title(f"held-out pass@k, {stage}", fontsize=10)
        ax.set_xlabel("k (samples drawn)")
        ax.set_ylabel("pass@k (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(stages) :]:
        ax.set_visible(False)
    fig.tight_layout()
    path = out / "pass_at_k.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_sweep_figures(arms: Sequence[ArmResult], out: Path) -> list[Path]:
    """Every figure of :data:`FIGURES` that some arm logs, plus pass@k; the written paths."""
    paths = [_figure(spec, arms, out) for spec in FIGURES]
    paths.append(_pass_at_k(arms, out))
    return [p for p in paths if p is not None]

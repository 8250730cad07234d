"""PNG figures of training runs: one figure per metric group, every run overlaid.

matplotlib is imported inside :func:`plot_figure` / :func:`plot_pass_at_k` with the Agg backend,
so importing this module is cheap and needs no display.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.report.runs import Run

STEP_LABEL = "training step (optimizer updates)"


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    ylabel: str


@dataclass(frozen=True)
class FigureSpec:
    """A figure file ``<name>.png``: one panel per metric key, runs overlaid in each panel.

    ``log_when_spanning`` switches a panel to a log y axis when its positive values span at
    least 2 decades (max / min >= 100). An ``optional`` figure (metrics logged only on request)
    is left out silently when no run logs any of its keys.
    """

    name: str
    title: str
    panels: tuple[Panel, ...]
    log_when_spanning: bool = False
    optional: bool = False


# docs/method.md §2: which tokens each region holds and which way its gradient moves entropy.
REGION_TITLES = {
    1: "E1: expected token, A > 0 (lowers H)",
    2: "E2: surprising token, A > 0 (raises H)",
    3: "E3: expected token, A < 0 (raises H)",
    4: "E4: surprising token, A < 0 (lowers H)",
}


def _regions(suffix: str, ylabel: str) -> tuple[Panel, ...]:
    return tuple(Panel(f"region/E{i}/{suffix}", t, ylabel) for i, t in REGION_TITLES.items())


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "entropy",
        "Policy entropy",
        (Panel("entropy/mean", "mean token entropy", "entropy (nats)"),),
    ),
    FigureSpec("reward", "Training reward", (Panel("reward/mean", "mean reward", "reward"),)),
    FigureSpec(
        "thresholds",
        "Clipping thresholds (mean over tokens)",
        (
            Panel("clip/eps_high_mean", "eps_high (upper)", "eps_high (ratio offset)"),
            Panel("clip/eps_low_mean", "eps_low (lower)", "eps_low (ratio offset)"),
        ),
    ),
    FigureSpec(
        "clip_fraction",
        "Clipped tokens per side",
        (
            Panel("clip/frac_high", "upper side (A > 0, r > 1 + eps_high)", "fraction of tokens"),
            Panel("clip/frac_low", "lower side (A < 0, r < 1 - eps_low)", "fraction of tokens"),
        ),
        log_when_spanning=True,
    ),
    FigureSpec(
        "region_share",
        "Token shares of the entropy regions E1-E4",
        _regions("share", "fraction of valid tokens"),
    ),
    FigureSpec(
        "region_pred_dH",
        "Predicted entropy change per region (first order)",
        _regions("pred_dH", "pred. dH (nats per unit step)"),
    ),
    FigureSpec(
        "region_pred_dH_clipped",
        "Entropy change the clip removed, per region (first order)",
        _regions("pred_dH_clipped", "removed pred. dH (nats per unit step)"),
    ),
    FigureSpec(
        "region_pred_dH_full",
        "Predicted entropy change per region, exact first order (pred_dH_full)",
        _regions("pred_dH_full", "pred. dH (nats per unit step)"),
        optional=True,
    ),
    FigureSpec(
        "region_pred_dH_full_clipped",
        "Entropy change the clip removed, per region, exact first order (pred_dH_full_clipped)",
        _regions("pred_dH_full_clipped", "removed pred. dH (nats per unit step)"),
        optional=True,
    ),
    FigureSpec(
        "control",
        "Strategy control signals",
        (
            Panel("control/w_up", "w_up (upper mixing weight)", "w_up (0..1)"),
            Panel("control/w_low", "w_low (lower mixing weight)", "w_low (0..1)"),
            Panel("control/target", "target entropy H*", "entropy (nats)"),
        ),
    ),
)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_shape(n: int) -> tuple[int, int]:
    return (1, n) if n <= 3 else (2, (n + 1) // 2)


def draw_grid(
    items: Sequence[Any], draw: Callable[[Any, Any], object], path: Path, *, title: str = ""
) -> Path:
    """One panel per item (``draw(ax, item)``) on a grid of at most 3 columns, the unused axes
    hidden, ``title`` above; saved as ``path``."""
    plt = pyplot()
    rows, cols = grid_shape(len(items))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, item in zip(axes.flat, items, strict=False):
        draw(ax, item)
    for ax in list(axes.flat)[len(items) :]:
        ax.set_visible(False)
    if title:
        # wrapped to the figure's width (about 11 characters per inch at the default size), so
        # that a long title is not cut at both edges
        fig.suptitle(textwrap.fill(title, width=int(11 * 4.6 * cols)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pass_at_k_axes(ax: Any, ks: Sequence[int], title: str) -> None:
    """Axis labels, log2 k ticks, grid and legend of a pass@k panel."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("k (samples drawn)")
    ax.set_ylabel("pass@k (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """Whether the positive ``values`` span at least ``decades`` powers of ten.

    >>> spans_decades([0.0, 1e-4, 0.02]), spans_decades([0.01, 0.5])
    (True, False)
    """
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) >= min(positive) * 10**decades


def plot_figure(
    spec: FigureSpec, runs: Sequence[Run], out_dir: Path
) -> tuple[Path | None, list[str]]:
    """Draw ``spec`` for ``runs`` into ``out_dir/<name>.png``; returns (path or None, notes).

    Panels whose metric no run logs are left out (with a note); a figure with no panel left is
    not written.
    """
    notes: list[str] = []
    panels = [p for p in spec.panels if any(r.has(p.key) for r in runs)]
    if spec.optional and not panels:
        return None, notes
    for p in spec.panels:
        if p not in panels:
            notes.append(f"`{spec.name}.png`: no run logs `{p.key}`; panel skipped")
        else:
            lacking = [r.label for r in runs if not r.has(p.key)]
            if lacking:
                notes.append(f"`{spec.name}.png`: `{p.key}` missing in {', '.join(lacking)}")
    if not panels:
        return None, notes
    path = draw_grid(panels, lambda ax, panel: _draw_panel(ax, panel, runs, spec.log_when_spanning),
                     out_dir / f"{spec.name}.png", title=spec.title)  # fmt: skip
    return path, notes


def _draw_panel(ax: Any, panel: Panel, runs: Sequence[Run], log_ok: bool) -> None:
    values: list[float] = []
    for run in runs:
        steps, ys = run.series(panel.key)
        if steps:
            ax.plot(steps, ys, label=run.label, marker="." if len(steps) < 30 else None)
            values.extend(ys)
    ylabel = panel.ylabel
    if log_ok and spans_decades(values):
        ax.set_yscale("log")
        ylabel += ", log scale"
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_pass_at_k(
    curves: Sequence[tuple[str, dict[str, Any]]], out_dir: Path
) -> tuple[Path | None, list[str]]:
    """``pass_at_k.png``: pass@k against k, one panel per benchmark (plus the average when
    there are several), one line per ``(label, results)`` pair (``results.json`` objects)."""
    if not curves:
        return None, ["`pass_at_k.png`: no eval results (eval/results.json or --eval-results)"]
    panels: dict[str, list[tuple[str, list[int], list[float]]]] = {}
    for label, results in curves:
        tables = {n: b["metrics"] for n, b in results["benchmarks"].items()}
        if len(tables) > 1:
            tables["average"] = results["average"]
        for bench, metrics in tables.items():
            ks = sorted(int(m.split("@")[1]) for m in metrics if m.startswith("pass@"))
            ys = [100 * metrics[f"pass@{k}"] for k in ks]
            panels.setdefault(bench, []).append((label, ks, ys))

    def draw(ax: Any, bench: str) -> None:
        lines = panels[bench]
        for label, ks, ys in lines:
            ax.plot(ks, ys, marker="o", label=label)
        pass_at_k_axes(ax, sorted({k for _, ks, _ in lines for k in ks}), bench)

    path = draw_grid(list(panels), draw, out_dir / "pass_at_k.png",
                     title="pass@k (unbiased estimator)")  # fmt: skip
    return path, []

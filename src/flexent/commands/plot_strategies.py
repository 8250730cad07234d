"""``flexent plot-strategies``: draw each strategy's weight curves (w_up, w_low) as PNGs.

The closed-loop strategies (``od``, ``target``) need an entropy signal, so every strategy is
run against the same synthetic plant (:func:`synthetic_entropy`), a toy model of training in
which entropy collapses by itself, rises under the dynamic upper threshold and falls under the
dynamic lower one. The plant illustrates the controllers; it is not a model of a real run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flexent.strategies import (
    PRESETS,
    Strategy,
    get_strategy,
    list_strategies,
    strategy_param_names,
)


def synthetic_entropy(h: float, w_up: float, w_low: float, *, h_init: float) -> float:
    """One step of the toy plant (nats):
    ``H' = H + 0.03 w_up (2 H_init - H) - 0.03 w_low H - 0.01 H``.

    >>> synthetic_entropy(1.0, 0.0, 0.0, h_init=1.0)  # static: 1% collapse per step
    0.99
    """
    return h + 0.03 * w_up * (2.0 * h_init - h) - 0.03 * w_low * h - 0.01 * h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="output folder")
    parser.add_argument("--total-steps", type=int, default=400)
    parser.add_argument("--phase-ratio", type=float, default=0.5, help="for id, did, presets")
    parser.add_argument("--target-preset", choices=PRESETS, default="did",
                        help="trajectory the target strategy tracks in its plot")  # fmt: skip
    parser.add_argument("--h-init", type=float, default=1.0, help="plant's initial entropy")
    parser.add_argument("--strategies", nargs="+", default=None, metavar="NAME",
                        help=f"subset of {list_strategies()} (default: all)")  # fmt: skip
    parser.add_argument("--dpi", type=int, default=80)


def _build(name: str, args: argparse.Namespace) -> Strategy:
    """Strategy ``name`` with the options of this command that it accepts."""
    options = {"phase_ratio": args.phase_ratio, "preset": args.target_preset}
    accepted = strategy_param_names(name)
    params = {k: v for k, v in options.items() if k in accepted}
    return get_strategy(name, total_steps=args.total_steps, **params)


def simulate(strategy: Strategy, h_init: float) -> dict[str, list[float]]:
    """Run ``strategy`` for steps 0..T against the plant; per-step series for plotting."""
    series: dict[str, list[float]] = {"w_up": [], "w_low": [], "entropy": []}
    h = h_init
    for k in range(strategy.total_steps + 1):
        w_up, w_low = strategy.weights(k, entropy=h)
        for key, value in (("w_up", w_up), ("w_low", w_low), ("entropy", h)):
            series[key].append(value)
        for key in ("control/target", "control/tau_high", "control/tau_low"):
            if key in strategy.metrics():
                series.setdefault(key, []).append(strategy.metrics()[key])
        h = synthetic_entropy(h, w_up, w_low, h_init=h_init)
    return series


def _plot(series: dict[str, list[float]], title: str, path: Path, dpi: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = range(len(series["w_up"]))
    fig, (ax_w, ax_h) = plt.subplots(2, 1, figsize=(6, 4.2), sharex=True)
    ax_w.plot(steps, series["w_up"], label="w_up", color="tab:red")
    ax_w.plot(steps, series["w_low"], label="w_low", color="tab:blue", linestyle="--")
    ax_w.set_ylim(-0.05, 1.05)
    ax_w.set_ylabel("weight")
    ax_w.set_title(title)
    ax_w.legend(loc="center right", fontsize=8)
    ax_h.plot(steps, series["entropy"], label="plant entropy", color="black")
    labels = {"control/target": "target H*", "control/tau_high": "tau_high",
              "control/tau_low": "tau_low"}  # fmt: skip
    for key, label in labels.items():
        if key in series:
            ax_h.plot(steps, series[key], label=label, linestyle=":")
    ax_h.set_xlabel("training step")
    ax_h.set_ylabel("entropy (nats)")
    ax_h.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    names = args.strategies or list_strategies()
    unknown = sorted(set(names) - set(list_strategies()))
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; valid: {list_strategies()}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        strategy = _build(name, args)
        title = repr(strategy)
        path = args.out / f"strategy_{name}.png"
        _plot(simulate(strategy, args.h_init), title, path, args.dpi)
        print(path)
    return 0

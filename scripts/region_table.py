"""Per arm of a sweep: which regions' tokens the clip removed, and what that did to entropy.

For every finished run of a sweep directory (``ARM/seedN`` with ``sweep_run.json``), averages
the logged region statistics (theory scheme, docs/metrics.md) over the first ``--fraction`` of
its logged steps, then prints the mean over seeds per arm as a markdown table: the clipped
fractions per side and, for E1-E4, the share of tokens, the fraction of them clipped, and the
exact first-order entropy change of the tokens the update kept and of those the clip removed
(``region/E*/pred_dH_full`` and ``pred_dH_full_clipped``, logged with
``entropy_control.log_pred_dh_full: true``; x 1e-3 nats per unit step).

    python scripts/region_table.py runs/sweeps/regime                      # every arm, whole run
    python scripts/region_table.py runs/sweeps/replication --arms static id --fraction 0.5

docs/replication.md quotes its tables with these commands.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from flexent.report import load_run

REGIONS = ("E1", "E2", "E3", "E4")
KEYS = ("share", "clip_frac", "pred_dH_full", "pred_dH_full_clipped")


def run_means(run_dir: Path, fraction: float) -> dict[str, float]:
    """Mean of each region key and clip fraction over the first ``fraction`` of logged steps
    (NaN where the run did not log the key)."""
    run = load_run(run_dir)
    keys = [f"region/{r}/{k}" for r in REGIONS for k in KEYS]
    out = {}
    for key in [*keys, "clip/frac_high", "clip/frac_low"]:
        values = run.series(key)[1]
        n = max(1, int(len(values) * fraction))
        out[key] = sum(values[:n]) / n if values else math.nan
    return out


def arm_table(root: Path, arms: list[str] | None, fraction: float) -> str:
    by_arm: dict[str, list[dict[str, float]]] = {}
    for run_dir in sorted(root.glob("*/seed*")):
        arm = run_dir.parent.name
        if (arms and arm not in arms) or not (run_dir / "sweep_run.json").is_file():
            continue
        by_arm.setdefault(arm, []).append(run_means(run_dir, fraction))
    missing = [a for a in arms or [] if a not in by_arm]
    if missing:
        raise SystemExit(f"error: no finished runs of arm(s) {', '.join(missing)} under {root}")
    if not by_arm:
        raise SystemExit(f"error: no finished sweep runs (ARM/seedN/sweep_run.json) under {root}")
    head = " | ".join(f"{r} share / clipped / dH kept / dH removed (x1e-3)" for r in REGIONS)
    lines = [f"| arm | seeds | clip high / low (%) | {head} |", "|---" * (3 + len(REGIONS)) + "|"]
    for arm in arms or sorted(by_arm):
        runs = by_arm[arm]

        def m(key: str, runs: list[dict[str, float]] = runs) -> float:
            return sum(r[key] for r in runs) / len(runs)

        cells = [f"{100 * m('clip/frac_high'):.2f} / {100 * m('clip/frac_low'):.2f}"]
        for r in REGIONS:
            p = f"region/{r}/"
            cells.append(
                f"{100 * m(p + 'share'):.1f} % / {100 * m(p + 'clip_frac'):.1f} % / "
                f"{1e3 * m(p + 'pred_dH_full'):+.2f} / {1e3 * m(p + 'pred_dH_full_clipped'):+.2f}"
            )
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, help="a `flexent sweep --out` directory")
    p.add_argument("--arms", nargs="+", metavar="ARM", help="these arms, in this order")
    p.add_argument(
        "--fraction", type=float, default=1.0, help="average over this first fraction of steps"
    )
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1:
        p.error(f"--fraction must be in (0, 1], got {args.fraction}")
    if not args.sweep_dir.is_dir():
        p.error(f"sweep directory not found: {args.sweep_dir}")
    print(arm_table(args.sweep_dir, args.arms, args.fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per arm of a sweep: how often the policy gradient vanishes, and how many groups carry no signal.

The paper says its strategies reduce vanishing gradient norms. Two measures per run, fixed
before any study run was read (docs/replication.md quotes the tables with these commands):

- ``vanishing``: the share of logged optimizer steps whose gradient norm (TRL's
  ``train/grad_norm``, before clipping) is below ``--below`` (default 0.25) times the median
  gradient norm of the run's first ``--early`` (default 10 %) logged steps;
- ``late/early``: the median gradient norm of the second half of the run over that early
  median;
- ``zero-adv``: the mean share of prompt groups whose rewards are all equal (zero advantage,
  no policy gradient; TRL's ``frac_reward_zero_std``).

Each is averaged over the arm's seeds, with a 95 % t-interval, and compared with ``--baseline``
(difference with a Welch t-interval) when given.

    python scripts/grad_norm_table.py runs/sweeps/smollm2 --baseline static
    python scripts/grad_norm_table.py runs/sweeps/replication --arms static id --baseline static
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from flexent.report import load_run
from flexent.sweep.stats import diff_interval, mean_interval

MEASURES = ("vanishing", "late/early", "zero-adv")


def run_measures(run_dir: Path, *, below: float, early: float) -> dict[str, float]:
    """The three measures of one run (NaN where the run did not log the key)."""
    run = load_run(run_dir)
    norms = [v for v in run.series("train/grad_norm")[1] if not math.isnan(v)]
    zero = [v for v in run.series("frac_reward_zero_std")[1] if not math.isnan(v)]
    out = dict.fromkeys(MEASURES, math.nan)
    if zero:
        out["zero-adv"] = sum(zero) / len(zero)
    if len(norms) >= 2:
        head = norms[: max(1, int(len(norms) * early))]
        ref = statistics.median(head)
        if ref > 0:
            out["vanishing"] = sum(v < below * ref for v in norms) / len(norms)
            out["late/early"] = statistics.median(norms[len(norms) // 2 :]) / ref
    return out


def arm_measures(
    root: Path, arms: list[str] | None, *, below: float, early: float
) -> dict[str, list[dict[str, float]]]:
    by_arm: dict[str, list[dict[str, float]]] = {}
    for run_dir in sorted(root.glob("*/seed*")):
        arm = run_dir.parent.name
        if (arms and arm not in arms) or not (run_dir / "sweep_run.json").is_file():
            continue
        by_arm.setdefault(arm, []).append(run_measures(run_dir, below=below, early=early))
    missing = [a for a in arms or [] if a not in by_arm]
    if missing:
        raise SystemExit(f"error: no finished runs of arm(s) {', '.join(missing)} under {root}")
    if not by_arm:
        raise SystemExit(f"error: no finished sweep runs (ARM/seedN/sweep_run.json) under {root}")
    return {arm: by_arm[arm] for arm in (arms or sorted(by_arm))}


def table(by_arm: dict[str, list[dict[str, float]]], baseline: str | None) -> str:
    if baseline is not None and baseline not in by_arm:
        raise SystemExit(f"error: baseline {baseline!r} is not among the arms {list(by_arm)}")
    head = ["arm", "seeds", *MEASURES]
    if baseline is not None:
        head += [f"{m} - {baseline}" for m in MEASURES]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arm, runs in by_arm.items():
        cells = [arm, str(len(runs))]
        cells += [mean_interval([r[m] for r in runs]).fmt(2) for m in MEASURES]
        if baseline is not None:
            base = by_arm[baseline]
            cells += [
                diff_interval([r[m] for r in runs], [r[m] for r in base]).fmt(2)
                if arm != baseline
                else "-"
                for m in MEASURES
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, help="a `flexent sweep --out` directory")
    p.add_argument("--arms", nargs="+", metavar="ARM", help="these arms, in this order")
    p.add_argument("--baseline", help="compare every arm with this one")
    p.add_argument("--below", type=float, default=0.25, help="vanishing: below this x early median")
    p.add_argument("--early", type=float, default=0.1, help="the early fraction of steps")
    args = p.parse_args(argv)
    if not 0 < args.early <= 1 or args.below <= 0:
        raise SystemExit("error: --early must be in (0, 1] and --below > 0")
    by_arm = arm_measures(args.sweep_dir, args.arms, below=args.below, early=args.early)
    print(table(by_arm, args.baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

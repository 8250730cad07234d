"""``flexent demo``: the CPU main job (docs/training.md, "The demo"). Ctrl-C / SIGTERM is passed
on to the arm being trained (:func:`flexent.sweep.runner.execute`), which checkpoints and
stops; the demo exits with the same status (130 / 143)."""

from __future__ import annotations

import argparse
import sys

from flexent.demo import ARMS, PRESETS, parse_arms, run_demo
from flexent.errors import Interrupted, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument(
        "--arms",
        default=",".join(ARMS),
        metavar="ARM,ARM",
        help="comma-separated arms trained side by side from the same warm-up, the first the "
        "baseline: strategy names or the presets "
        + ", ".join(PRESETS)
        + " (default: "
        + ",".join(ARMS)
        + "; docs/training.md)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every arm (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of each run (default: torch's choice)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="dotted overrides of configs/demo.yaml, for every arm",
    )


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        print(f"flexent demo: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    try:
        return run_demo(args.run_dir, list(args.overrides), arms=parse_arms(args.arms),
                        threads=args.threads, seed=args.seed)  # fmt: skip
    except UserError as err:
        print(f"flexent demo: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # the arms' runs got the signal and checkpointed
        print(
            f"flexent demo: {stop.name}: stopped; each arm's run directory keeps its last "
            f"checkpoint (flexent train {args.run_dir}/ARM/seed{args.seed}/config.yaml --resume "
            "continues one); the demo starts afresh in an empty --run-dir",
            file=sys.stderr,
        )
        return stop.exit_code
    except KeyboardInterrupt:  # Ctrl-C during the warm-up, which runs in this process
        print("flexent demo: SIGINT: stopped (during the warm-up)", file=sys.stderr)
        return 130

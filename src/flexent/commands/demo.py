"""``flexent demo``: the CPU main job (docs/training.md, "The demo")."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy machine)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="dotted overrides of configs/demo.yaml",
    )


def run(args: argparse.Namespace) -> int:
    from flexent.demo import run_demo

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    return run_demo(args.run_dir, list(args.overrides))

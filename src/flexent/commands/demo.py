"""``flexent demo``: the CPU main job (docs/training.md, "The demo")."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="dotted overrides of configs/demo.yaml",
    )


def run(args: argparse.Namespace) -> int:
    from flexent.demo import run_demo

    return run_demo(args.run_dir, list(args.overrides))

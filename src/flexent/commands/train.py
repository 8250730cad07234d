"""``flexent train CONFIG.yaml [key.sub=value ...] [--resume]``: one GRPO run (docs/training.md)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML run config (docs/training.md lists every key)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key.sub=value", help="dotted config overrides"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output.dir from its last checkpoint",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="T",
        help="torch CPU threads (default: torch's choice)",
    )


def run(args: argparse.Namespace) -> int:
    from flexent.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"flexent train: {err}")
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"flexent train: --threads must be >= 1, got {args.threads}")
            return 2
        import torch

        torch.set_num_threads(args.threads)
    from flexent.integrations.trl.run import run_training

    result = run_training(cfg, resume=args.resume)
    print(f"run directory: {result.run_dir} (step {result.global_step})")
    for name in ("start", "final"):
        if name in result.eval:
            print(f"{name} accuracy: {result.eval[name]['accuracy']:.3f}")
    return 0

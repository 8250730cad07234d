"""``flexent train CONFIG.yaml [key.sub=value ...] [--resume]``: one GRPO run (docs/training.md).

A mistake (config, data file, reward parameters, model path, resume state) is reported as one
line, ``flexent train: <problem and where>``, before the model loads, with exit status 2 and
no run directory left behind.
"""

from __future__ import annotations

import argparse
import sys

from flexent.errors import UserError

# `flexent train CFG --resume key=value`: overrides may follow the flags (cli.main)
TRAILING_OVERRIDES = True


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
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept changed schedule settings (max_steps, entropy_control, "
        "steps per generation), which jump the strategy's schedule mid-run",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="T",
        help="torch CPU threads (default: torch's choice)",
    )


def fail(message: str) -> int:
    print(f"flexent train: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    # (lazy: TRL and torch, which `flexent --help` never needs)
    from flexent.integrations.trl.config import load_config

    if args.threads is not None and args.threads < 1:
        return fail(f"--threads must be >= 1, got {args.threads}")
    if args.allow_config_change and not args.resume:
        return fail("--allow-config-change goes with --resume")
    try:
        cfg = load_config(args.config, args.overrides)
    except UserError as err:
        return fail(str(err))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from flexent.integrations.trl.run import run_training

    try:
        result = run_training(cfg, resume=args.resume, allow_config_change=args.allow_config_change)
    except UserError as err:
        return fail(str(err))
    print(f"run directory: {result.run_dir} (step {result.global_step})")
    for name in ("start", "final"):
        if name in result.eval:
            print(f"{name} accuracy: {result.eval[name]['accuracy']:.3f}")
    return 0

"""``flexent train CONFIG.yaml [key.sub=value ...] [--resume]``: one GRPO run (docs/training.md).

A mistake (config, data file, reward parameters, model path, resume state) is reported as one
line, ``flexent train: <problem and where>``, before the model loads, with exit status 2 and
no run directory left behind. Ctrl-C or SIGTERM during training stops after the current step
with a checkpoint and one line saying how to resume (exit 130 / 143); a second stops at once.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from flexent.errors import Interrupted, UserError, one_line_warnings

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


def say(message: str) -> None:
    print(f"flexent train: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    with one_line_warnings("flexent train"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
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
        result = run_training(
            cfg, resume=args.resume, allow_config_change=args.allow_config_change, notify=say
        )
    except UserError as err:
        return fail(str(err))
    except KeyboardInterrupt as stop:  # a second Ctrl-C, or one outside training
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        say(f"{signal.Signals(signum).name}: stopped at once; {_how_to_go_on(args, cfg)}")
        return 128 + signum
    if result.status == "interrupted":
        assert result.signum is not None
        name = signal.Signals(result.signum).name
        say(f"{name}: stopped after step {result.global_step}; {_how_to_go_on(args, cfg)}")
        return 128 + result.signum
    if result.status == "complete":
        say(
            f"{result.run_dir} is complete (trained to trainer.max_steps={result.global_step}, "
            "final results written): nothing to do"
        )
    print(f"run directory: {result.run_dir} (step {result.global_step})")
    for name in ("start", "final"):
        if name in result.eval:
            print(f"{name} accuracy: {result.eval[name]['accuracy']:.3f}")
    return 0


def _how_to_go_on(args: argparse.Namespace, cfg: Any) -> str:
    """The command that continues the run: ``--resume`` from its last checkpoint, or the
    same command again when none was written."""
    from flexent.integrations.trl.checkpoints import last_checkpoint

    run_dir = Path(cfg.output.dir)
    ckpt = last_checkpoint(run_dir) if run_dir.is_dir() else None
    cmd = ["flexent", "train", args.config, *args.overrides]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if ckpt is None:
        return f"no checkpoint was written; start again with: {shlex.join(cmd)}"
    return f"{ckpt.name} holds the run; resume with: {shlex.join([*cmd, '--resume'])}"

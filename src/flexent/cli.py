"""The ``flexent`` command line.

Each subcommand lives in its own module, imported only when that subcommand runs, so
``flexent --help`` stays fast. A command module exposes ``add_arguments(parser)`` and
``run(args) -> int``; add it to ``COMMANDS`` below.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from flexent import __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("flexent.commands.train", "GRPO training with entropy control (TRL)."),
    "demo": (
        "flexent.commands.demo",
        "The CPU main job: warm-up, GRPO per arm (static, id, target-bonus), pass@k, report.",
    ),
    "eval": (
        "flexent.commands.eval",
        "Sample K answers per problem; report mean@K, pass@k, maj@K.",
    ),
    "report": ("flexent.commands.report", "Figures and report.md from training run directories."),
    "sweep": (
        "flexent.commands.sweep",
        "Many training runs from one spec (arms x seeds), then their report with intervals.",
    ),
    "plot-strategies": (
        "flexent.commands.plot_strategies",
        "Plot each entropy-control strategy's weight curves (w_up, w_low) as PNGs.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flexent",
        description="Flexible entropy control for RLVR on language models.",
    )
    parser.add_argument("--version", action="version", version=f"flexent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extra:
        # `flexent train CFG --resume key=value`: argparse stops collecting the positional
        # overrides at the first flag; a command that takes trailing overrides gets them back.
        overrides = [x for x in extra if "=" in x and not x.startswith("-")]
        if getattr(args._module, "TRAILING_OVERRIDES", False) and len(overrides) == len(extra):
            args.overrides = [*args.overrides, *overrides]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt as stop:  # Ctrl-C where the command has no more to say
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"flexent {args.command}: {signal.Signals(signum).name}: stopped", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())

"""``flexent report RUN_DIR [RUN_DIR ...] --out DIR``: figures and report.md from training runs."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (hold metrics.jsonl)"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder for PNGs and report.md"
    )
    parser.add_argument(
        "--eval-results",
        nargs="+",
        default=[],
        metavar="[LABEL=]PATH",
        help="extra results.json files for the pass@k figure (label defaults to the folder name)",
    )


def _labelled(item: str) -> tuple[str, str]:
    from pathlib import Path

    label, sep, path = item.partition("=")
    if sep and label and not Path(item).exists():
        return label, path
    return Path(item).resolve().parent.name, item


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flexent.errors import UserError, one_line_warnings
    from flexent.report import make_report

    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"flexent report: --out {args.out} is a file, not a folder", file=sys.stderr)
        return 2
    try:
        with one_line_warnings("flexent report"):
            report = make_report(
                args.run_dirs, args.out, eval_results=[_labelled(x) for x in args.eval_results]
            )
    except UserError as err:  # every run is read before anything is written
        print(f"flexent report: {err}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {len(report.figures)} figures and {report.report}")
    return 0

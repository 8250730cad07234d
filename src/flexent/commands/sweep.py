"""``flexent sweep SPEC.yaml``: many ``flexent train`` runs from one spec, then the report over
seeds (docs/sweeps.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flexent.demo  # noqa: F401  (registers `base: demo` with the sweep)
from flexent.errors import Interrupted
from flexent.report import load_run
from flexent.sweep import (
    RunSpec,
    Setup,
    SpecError,
    SweepSpec,
    base_names,
    load_spec,
    validate_runs,
)
from flexent.sweep.compare import write_sweep_report
from flexent.sweep.results import run_values
from flexent.sweep.runner import Outcome, execute, run_state, shell_line, train_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="sweep spec (YAML; docs/sweeps.md lists every key)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="runs at once (default 1)")  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None, metavar="T",
        help="torch CPU threads of each run (default: torch's choice; with --jobs N on C "
        "cores, C / N)",
    )  # fmt: skip
    parser.add_argument("--out", metavar="DIR", help="sweep directory (default: the spec's out)")
    parser.add_argument(
        "--seed-major", action="store_true",
        help="run every arm's first seed, then every arm's second, ... (default: arm by arm); a "
        "sweep stopped early then holds whole seeds of every arm",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", action="store_true",
        help="print one `flexent train` command line per run that is not finished, run nothing "
        "(for a SLURM array or a Ray job)",
    )  # fmt: skip
    mode.add_argument(
        "--prepare", action="store_true",
        help="base: demo only: build the warm-up model and prompt files, run nothing",
    )  # fmt: skip
    mode.add_argument("--report-only", action="store_true",
                      help="write the report from the finished runs, run nothing")  # fmt: skip
    parser.add_argument(
        "--arms", nargs="+", metavar="ARM",
        help="report only these arms (names as in report.md, e.g. static id "
        "'static__reuse=4_640'); with --report-dir, a focused report beside the full one",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", metavar="ARM",
        help="compare the arms with this arm instead of the spec's baseline (e.g. id "
        "clip-higher --baseline clip-higher)",
    )  # fmt: skip
    parser.add_argument("--report-dir", metavar="DIR",
                        help="where the report goes (default: <sweep dir>/report)")  # fmt: skip


def _fail(message: str) -> int:
    print(f"flexent sweep: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        return _fail(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        return _fail(f"--threads must be >= 1, got {args.threads}")
    try:
        spec = load_spec(args.spec, out=args.out)
        if args.report_only:  # finished runs only: their configs need no building
            return _report(spec, args.arms, args.report_dir, args.baseline)
        setup = spec.setup()
        runs = spec.runs(setup.overrides(_cache(spec)) if setup else None)
        if args.seed_major:
            runs.sort(key=lambda run: spec.seeds.index(run.seed))  # stable: arm order kept
        validate_runs(spec, runs)
    except SpecError as err:
        return _fail(str(err))
    if args.arms or args.report_dir or args.baseline:
        return _fail("--arms, --baseline and --report-dir go with --report-only")
    if args.dry_run:
        return _dry_run(spec, runs, setup, args.threads)
    if setup is not None:
        setup.prepare(_cache(spec))
        if args.prepare:
            print(
                f"prepared: {', '.join(f'{k}={v}' for k, v in setup.overrides(_cache(spec)).items())}"
            )
            return 0
    elif args.prepare:
        names = " or ".join(base_names())
        return _fail(
            f"--prepare is for base: {names} (a flexent train config needs no preparation)"
        )
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    try:
        failed = _execute(spec, runs, args.jobs, args.threads)
    except Interrupted as stop:
        print(
            f"flexent sweep: {stop.name}: stopped; finished runs are kept and interrupted ones "
            f"resume from their last checkpoint with: {shell_line(_again(args))}",
            file=sys.stderr,
        )
        return stop.exit_code
    code = _report(spec)
    return 1 if failed else code


def _again(args: argparse.Namespace) -> list[str]:
    """The command that continues this sweep."""
    cmd = ["flexent", "sweep", args.spec]
    for flag, value in (("--out", args.out), ("--jobs", args.jobs), ("--threads", args.threads)):
        if value is not None and not (flag == "--jobs" and value == 1):
            cmd += [flag, str(value)]
    return cmd


def _cache(spec: SweepSpec) -> Path:
    """A named base's cache: beside the sweep directory's parent, like ``flexent demo``'s."""
    return spec.out.parent / ".flexent-cache"


def _dry_run(spec: SweepSpec, runs: list[RunSpec], setup: Setup | None, threads: int | None) -> int:
    if setup is not None and not setup.prepared(_cache(spec)):
        print(f"# first build the warm-up model and prompts: flexent sweep {spec.path} --prepare")
    for run in runs:
        state = run_state(run)
        if state == "done":
            continue
        cmd = train_command(spec.base_config(), run, resume=state == "resume", threads=threads,
                            console=True)  # fmt: skip
        print(shell_line(cmd))
    return 0


def _execute(spec: SweepSpec, runs: list[RunSpec], jobs: int, threads: int | None) -> int:
    from tqdm.auto import tqdm

    failed = 0
    with tqdm(total=len(runs), desc=f"sweep {spec.name}", unit="run", file=sys.stderr) as bar:

        def on_done(outcome: Outcome) -> None:
            nonlocal failed
            bar.update(1)
            if outcome.status == "failed":
                failed += 1
            bar.write(_line(outcome))

        execute(spec.base_config(), runs, spec.out, jobs=jobs, threads=threads, on_done=on_done)
    return failed


def _line(outcome: Outcome) -> str:
    """One line per finished run: name, wall time, final entropy, reward, held-out accuracy."""
    name = outcome.run.name
    if outcome.status == "failed":
        return f"FAILED {name} after {outcome.wall_s:.0f} s ({outcome.message})"
    if outcome.status == "skipped":
        return f"skip   {name} ({outcome.message})"
    if outcome.status == "interrupted":
        return f"stop   {name} after {outcome.wall_s:.0f} s ({outcome.message})"
    values = run_values(load_run(outcome.run.run_dir))
    acc = values.get("final accuracy")
    held_out = "" if acc is None else f", held-out accuracy {acc:.3f}"  # evaluation off: none
    return (
        f"done   {name} in {outcome.wall_s:.0f} s: entropy {values['entropy@100%']:.3f}, "
        f"reward {values['reward final']:.3f}{held_out}"
    )


def _report(
    spec: SweepSpec, arms: list[str] | None = None, out: str | None = None,
    baseline: str | None = None,
) -> int:  # fmt: skip
    try:
        path = write_sweep_report(spec, Path(out) if out else None, arms=arms, baseline=baseline)
    except ValueError as err:
        return _fail(str(err))
    print(f"report: {path}")
    return 0

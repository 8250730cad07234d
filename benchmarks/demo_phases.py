"""Where the time of `flexent demo` goes: its phases, one arm's parts, and the parent's CPU.

    python benchmarks/demo_phases.py                  # the whole demo + one arm profiled
    python benchmarks/demo_phases.py --skip-demo      # one arm profiled only

1. ``flexent demo`` in a subprocess (a fresh run directory; the warm-up model is built into
   its cache unless ``--cache`` names a filled one): the wall time of the warm-up, of each arm
   (its own ``flexent train`` process: start-up, model load, evaluations, training) and of the
   reports, read from the demo's own progress lines; and the demo (parent) process's own CPU
   seconds while its arms run, read from ``/proc/<pid>/stat`` (children excluded).
2. One arm (``static``) as a ``flexent train`` inside this process with the timers of
   ``benchmarks/profile_smollm2_step.py`` plus the evaluations and the model load, and the
   import cost of a fresh process (``import flexent.integrations.trl``), measured apart.

Shares are of one run, so they hold on a slow day as on a fast one; absolute seconds are this
machine's on the day (quote them with the date). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_smollm2_step import TIMES, instrument, report

ROOT = Path(__file__).resolve().parents[1]
DONE = re.compile(r"\[demo\] (\S+): done in (\d+) s")


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of process ``pid`` itself (not its children), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def demo_phases(run_dir: Path, threads: int | None) -> str:
    """Run ``flexent demo`` and return its phase table."""
    cmd = [sys.executable, "-m", "flexent", "demo", "--run-dir", str(run_dir)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[str, float, float | None]] = []  # (event, wall, parent cpu)

    def sample(event: str) -> None:
        marks.append((event, time.perf_counter() - start, _cpu_seconds(proc.pid)))

    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if "bootstrap" in line and ("done" in line or "cached" in line):
            sample("warm-up")
        elif (m := DONE.search(line)) is not None:
            sample(f"arm {m.group(1)}")
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit("flexent demo failed:\n" + "\n".join(lines[-20:]))
    rows = ["| phase | wall (s) | share | demo process CPU (s) |", "|---|---|---|---|"]
    prev_wall, prev_cpu = 0.0, 0.0
    for event, wall, cpu in marks:
        cpu_txt = "" if cpu is None else f"{cpu - prev_cpu:.1f}"
        rows.append(f"| {event} | {wall - prev_wall:.1f} | {100 * (wall - prev_wall) / total:.0f} % "
                    f"| {cpu_txt} |")  # fmt: skip
        prev_wall, prev_cpu = wall, (cpu if cpu is not None else prev_cpu)
    rows.append(f"| reports, exit | {total - prev_wall:.1f} | "
                f"{100 * (total - prev_wall) / total:.0f} % | |")  # fmt: skip
    rows.append(f"| **total** | {total:.1f} | | |")
    return "\n".join(rows)


def import_seconds() -> float:
    """Wall time of a fresh interpreter importing what `flexent train` imports."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import flexent.integrations.trl, flexent.cli"],
                   check=True)  # fmt: skip
    return time.perf_counter() - start


def one_arm(cache: Path, threads: int | None) -> str:
    """Train the demo's ``static`` arm in this process with the phase timers; its table."""
    from flexent.cli import main as cli
    from flexent.demo.setup import CONFIG, DemoSetup

    setup = DemoSetup()
    setup.prepare(cache)
    instrument()
    import flexent.integrations.trl.run as trl_run
    from flexent.integrations.trl.trainer import FlexentGRPOTrainer

    in_train = [False]
    train, bench = FlexentGRPOTrainer.train, trl_run.run_benchmark

    def train_flagged(*args: Any, **kwargs: Any) -> Any:
        in_train[0] = True
        try:
            return train(*args, **kwargs)
        finally:
            in_train[0] = False

    def bench_timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return bench(*args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            TIMES["evaluations"] += spent
            TIMES["evaluations in train"] += spent if in_train[0] else 0.0

    FlexentGRPOTrainer.train = train_flagged  # type: ignore[method-assign]
    trl_run.run_benchmark = bench_timed  # the name run.py calls
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", str(CONFIG), *(f"{k}={v}" for k, v in setup.overrides(cache).items()),
                "entropy_control.strategy=static", f"output.dir={tmp}/static"]  # fmt: skip
        if threads is not None:
            argv += ["--threads", str(threads)]
        start = time.perf_counter()
        if cli(argv):
            raise SystemExit("the profiled arm failed")
        wall = time.perf_counter() - start
    import yaml

    steps = int(yaml.safe_load(CONFIG.read_text())["trainer"]["max_steps"])
    t = dict(TIMES)
    TIMES["train"] -= t.get("evaluations in train", 0.0)  # the per-step split: training only
    lines = [
        report(steps),
        "",
        "| arm phase | seconds | share of the arm |",
        "|---|---|---|",
        f"| interpreter + imports (a fresh process, measured apart) | {import_seconds():.1f} | |",
    ]
    parts = {
        "evaluations (start, middle, final)": t.get("evaluations", 0.0),
        "training (train() without the evaluations in it)": t.get("train", 0.0)
        - t.get("evaluations in train", 0.0),
    }
    parts["set-up, model load, saving"] = wall - sum(parts.values())
    lines += [f"| {k} | {v:.1f} | {100 * v / wall:.0f} % |" for k, v in parts.items()]
    lines.append(f"| **arm in this process** | {wall:.1f} | |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads of each run")
    p.add_argument("--skip-demo", action="store_true", help="profile one arm only")
    p.add_argument("--cache", type=Path, default=None,
                   help="warm-up cache directory (default: a fresh temporary one)")  # fmt: skip
    args = p.parse_args()
    print(f"# demo phases, {time.strftime('%Y-%m-%d %H:%M %Z')}\n")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / ".flexent-cache"
        if not args.skip_demo:
            print(demo_phases(Path(tmp) / "demo", args.threads), "\n", flush=True)
            cache = Path(tmp) / ".flexent-cache"  # the demo filled it
        print(one_arm(cache, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

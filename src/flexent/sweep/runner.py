"""Running a sweep's runs: one ``flexent train`` process per run, ``jobs`` at a time, resumable.

Each run's state is read from its run directory: ``sweep_run.json`` with ``"status": "done"``
means finished (skipped); a complete ``checkpoint-N`` means interrupted (continued with
``--resume``); anything else starts afresh (a directory without a checkpoint is removed
first). A failed run is recorded (``"status": "failed"``, the log's last lines) and does not
stop the others; the next ``flexent sweep`` retries it. Each process's output goes to
``<out>/logs/<arm>__seed<s>.log``. Ctrl-C / SIGTERM is passed on to the running processes,
which checkpoint and stop (``"status": "interrupted"``: the next ``flexent sweep`` resumes
them).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.errors import Interrupted
from flexent.sweep.spec import RunSpec

STATUS_FILE = "sweep_run.json"


@dataclass
class Outcome:
    """What happened to one run in this invocation."""

    run: RunSpec
    status: str  # done | failed | skipped | interrupted
    wall_s: float
    message: str = ""


def run_state(run: RunSpec) -> str:
    """``done``, ``resume`` (a complete checkpoint) or ``fresh``."""
    # (lazy: importing flexent.integrations.trl imports TRL, which --report-only never needs)
    from flexent.integrations.trl.checkpoints import last_checkpoint

    if is_done(run):
        return "done"
    if run.run_dir.is_dir() and last_checkpoint(run.run_dir) is not None:
        return "resume"
    return "fresh"


def is_done(run: RunSpec) -> bool:
    """Whether ``run`` finished (its ``sweep_run.json`` says ``done``); reads one file."""
    status = read_status(run.run_dir)
    return status is not None and status.get("status") == "done"


def read_status(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # a torn write of a killed sweep: the run is not known to be done
    return data if isinstance(data, dict) else None


def train_command(
    config: Path, run: RunSpec, *, resume: bool, threads: int | None, console: bool = False
) -> list[str]:
    """The ``flexent train`` command of ``run`` (``console``: the ``flexent`` script, for
    printing; else this interpreter's ``-m flexent``)."""
    head = ["flexent"] if console else [sys.executable, "-m", "flexent"]
    cmd = [*head, "train", str(config), *run.overrides]
    if resume:
        cmd.append("--resume")
    if threads is not None:
        cmd += ["--threads", str(threads)]
    return cmd


def shell_line(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def log_path(out: Path, run: RunSpec) -> Path:
    return out / "logs" / f"{run.arm}__seed{run.seed}.log"


@dataclass
class _Active:
    run: RunSpec
    proc: subprocess.Popen
    started: float
    log: Any


def execute(
    config: Path,
    runs: Sequence[RunSpec],
    out: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    on_done: Callable[[Outcome], None] = lambda o: None,
) -> list[Outcome]:
    """Run every run that is not done, ``jobs`` processes at a time; ``on_done`` is called as
    each one ends (in completion order).

    SIGINT / SIGTERM (:class:`Forward`): no further run starts, the signal is passed on to the
    running ones, which checkpoint after their current step and exit; they are recorded as
    ``interrupted`` (the next call resumes them) and :class:`flexent.errors.Interrupted` is
    raised once all have ended. A second signal is passed on too (the runs stop at once).
    """
    outcomes: list[Outcome] = []
    pending = []
    for run in runs:
        if run_state(run) == "done":
            outcome = Outcome(run, "skipped", 0.0, "finished earlier")
            outcomes.append(outcome)
            on_done(outcome)
        else:
            pending.append(run)
    forward = Forward()
    try:
        with forward.installed():
            while (pending and forward.signum is None) or forward.active:
                while pending and forward.signum is None and len(forward.active) < jobs:
                    forward.active.append(_start(config, pending.pop(0), out, threads))
                forward.pass_on()  # a run started while the signal came gets it too
                time.sleep(0.2)
                for job in [j for j in forward.active if j.proc.poll() is not None]:
                    forward.active.remove(job)
                    outcome = _finish(job, out, stopped=forward.signum is not None)
                    outcomes.append(outcome)
                    on_done(outcome)
    except KeyboardInterrupt:  # no handlers (not the main thread), or a third signal
        for job in forward.active:
            job.proc.kill()
        for job in forward.active:
            job.proc.wait()
            job.log.close()
        raise
    if forward.signum is not None:
        raise Interrupted(forward.signum)
    return outcomes


class Forward:
    """SIGINT / SIGTERM in a parent of ``flexent train`` processes (``flexent sweep``,
    ``flexent demo``): each signal is passed on to every run in :attr:`active`, and the first
    is remembered in :attr:`signum` (no new run starts). The runs count a signal that
    reaches them twice at once (from the terminal's process group and from here) as one, so
    the first Ctrl-C lets each finish its step and checkpoint, and a second stops them at
    once. A third stops the parent (KeyboardInterrupt: the runs are killed)."""

    def __init__(self) -> None:
        self.active: list[_Active] = []
        self.signum: int | None = None
        self._signals: list[int] = []  # received, in order
        self._sent: dict[int, int] = {}  # child pid -> how many of them it was sent

    @contextlib.contextmanager
    def installed(self) -> Iterator[Forward]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)
        if len(self._signals) > 2:
            raise KeyboardInterrupt
        self.signum = self.signum or signum
        self.pass_on()

    def pass_on(self) -> None:
        """Send each run in :attr:`active` the signals received that it was not sent yet."""
        for job in list(self.active):
            sent = self._sent.get(job.proc.pid, 0)
            for signum in self._signals[sent:]:
                with contextlib.suppress(ProcessLookupError):
                    job.proc.send_signal(signum)
            self._sent[job.proc.pid] = len(self._signals)


def _start(config: Path, run: RunSpec, out: Path, threads: int | None) -> _Active:
    resume = run_state(run) == "resume"
    if not resume and run.run_dir.exists():
        shutil.rmtree(run.run_dir)  # started before but never checkpointed: start afresh
    log_file = log_path(out, run)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log = log_file.open("a", encoding="utf-8")
    cmd = train_command(config, run, resume=resume, threads=threads)
    log.write(f"$ {shell_line(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return _Active(run, proc, time.time(), log)


def _finish(job: _Active, out: Path, *, stopped: bool = False) -> Outcome:
    """The outcome of an ended run (``stopped``: the sweep was interrupted), recorded in its
    run directory's ``sweep_run.json``."""
    job.log.close()
    wall = time.time() - job.started
    rc = job.proc.returncode
    if rc == 0 and job.run.run_dir.is_dir():
        status = {"status": "done", "wall_s": round(wall, 1), "rc": rc}
        _write_status(job.run.run_dir, status)
        return Outcome(job.run, "done", wall)
    if stopped and (rc < 0 or rc > 128):  # exit 130 / 143, or killed by the signal
        if job.run.run_dir.is_dir():
            _write_status(job.run.run_dir, {"status": "interrupted", "rc": rc})
        return Outcome(job.run, "interrupted", wall, _last_line(log_path(out, job.run)))
    tail = _last_line(log_path(out, job.run))
    if job.run.run_dir.is_dir():
        _write_status(job.run.run_dir, {"status": "failed", "rc": rc, "error": tail})
    return Outcome(job.run, "failed", wall, f"exit {rc}: {tail}")


def _write_status(run_dir: Path, status: dict[str, Any]) -> None:
    path = run_dir / STATUS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(status, indent=1), encoding="utf-8")
    tmp.replace(path)


_ERROR = re.compile(r"^(flexent \w+: |[A-Za-z_.]*(Error|Exception|Interrupt)\b)")


def _last_line(path: Path) -> str:
    """The log's last error line (``flexent train: ...`` or an exception's last line), else its
    last non-empty line (progress-bar carriage returns folded)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR.match(ln)]
    if errors:
        return errors[-1][:300]
    return lines[-1][:300] if lines else "(empty log)"

"""A hard per-call timeout that works in the main thread, in other threads and in workers.

Symbolic checkers (sympy via math-verify) can run for minutes on inputs such as
``9^{9^{9}}``. Python cannot stop a thread, and ``SIGALRM`` only works in the main thread and
cannot interrupt C code: measured here, math-verify on ``9^{9^{9}}`` sometimes sits in sympy's
``Integer._eval_power`` computing ``9**387420489`` in C, and a 1 s ``setitimer`` alarm then
does not fire for minutes (an abandoned thread would also hold the GIL all that time). So the
check runs in a separate process that can be killed:

* the call runs in a reusable worker process started with ``subprocess``
  (``python -m flexent.rewards._worker``), so it works the same in the main thread, in other
  threads, inside daemonic ``multiprocessing`` workers (which may not fork ``multiprocessing``
  children, but may start subprocesses) and in Ray workers;
* on expiry the worker is killed (SIGKILL) and a replacement starts in the background;
* cost per call: one pickle round trip over a pipe (tens of microseconds); a worker starts
  once (imports and a warm-up, seconds), and start-up time never counts against a timeout.

POSIX only (the parent waits on the pipe with ``select``).
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from flexent.rewards import _frames


class CheckTimeout(Exception):
    """The checked call ran past its timeout; its worker was killed."""


class WorkerError(Exception):
    """The call raised inside the worker (the worker stays usable)."""


class WorkerDied(WorkerError):
    """The worker process ended (crash, out of memory) or did not start."""


def run_with_timeout(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    *,
    timeout: float,
    pool: WorkerPool | None = None,
) -> Any:
    """``fn(*args)`` in a worker process, killed after ``timeout`` seconds.

    Raises :class:`CheckTimeout` on expiry, :class:`WorkerError` when ``fn`` raised (message
    ``"Type: text"``). ``fn`` must be importable by name (a module-level function), and its
    arguments and result picklable.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return (pool or default_pool()).run(fn, args, timeout=timeout)


class _Worker:
    def __init__(self, preload: Sequence[str], startup_timeout: float) -> None:
        env = dict(os.environ)
        # The child must import flexent (and any user module holding ``fn``) like we do.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flexent.rewards._worker", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            reply = self._wait(startup_timeout)
        except CheckTimeout:
            reply = None
        if reply != ("ready", None):
            self.kill()
            raise WorkerDied(
                f"worker did not start within {startup_timeout} s (exit code "
                f"{self.proc.returncode}; its stderr says why)"
            )

    def _wait(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise CheckTimeout(f"timed out after {timeout} s (worker killed)")
        try:
            return _frames.recv(self.proc.stdout)
        except Exception as e:  # a truncated frame from a dying worker
            raise WorkerDied(f"worker sent a broken reply: {e}") from e

    def call(self, fn: Callable[..., Any], args: Sequence[Any], timeout: float) -> Any:
        assert self.proc.stdin is not None
        try:
            _frames.send(self.proc.stdin, (fn, tuple(args)))
        except (BrokenPipeError, OSError) as e:
            raise WorkerDied(f"worker died: {e}") from e
        reply = self._wait(timeout)
        if reply is None:
            raise WorkerDied(f"worker died (exit code {self.proc.wait()})")
        status, value = reply
        if status == "error":
            raise WorkerError(value)
        return value

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class WorkerPool:
    """Reusable worker processes, at most ``max_workers`` busy at once (threads share it)."""

    def __init__(
        self, *, max_workers: int = 4, preload: Sequence[str] = (), startup_timeout: float = 120.0
    ) -> None:
        self.max_workers = max_workers
        self.preload = tuple(preload)
        self.startup_timeout = startup_timeout
        self._idle: list[_Worker] = []
        self._busy = 0  # workers in use or starting
        self._starting = 0  # background replacements not ready yet
        self._cond = threading.Condition()
        self._pid = os.getpid()

    def run(self, fn: Callable[..., Any], args: Sequence[Any], *, timeout: float) -> Any:
        worker = self._acquire()
        ok = False
        try:
            result = worker.call(fn, args, timeout)
            ok = True
            return result
        except WorkerError as e:
            ok = not isinstance(e, WorkerDied)
            raise
        finally:
            self._release(worker, keep=ok)

    def prestart(self) -> None:
        """Start one worker in the background (imports and warm-up take seconds) so that the
        first :meth:`run` finds it ready; nothing when a worker exists or is starting."""
        with self._cond:
            if os.getpid() != self._pid or self._idle or self._busy:
                return
            self._starting += 1
            self._busy += 1  # counted as busy until ready, like a replacement
        threading.Thread(target=self._replace, daemon=True, name="flexent-worker-start").start()

    def _acquire(self) -> _Worker:
        with self._cond:
            if os.getpid() != self._pid:  # forked: the workers belong to the parent
                self._idle, self._busy, self._starting, self._pid = [], 0, 0, os.getpid()
            # A replacement that is starting is nearer than a new worker: wait for it.
            while not self._idle and (self._starting or self._busy >= self.max_workers):
                self._cond.wait()
            self._busy += 1
            if self._idle:
                return self._idle.pop()
        try:
            return _Worker(self.preload, self.startup_timeout)
        except BaseException:
            with self._cond:
                self._busy -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, *, keep: bool) -> None:
        if keep:
            self._put_idle(worker)
            return
        worker.kill()
        with self._cond:
            self._starting += 1
        # Start the replacement now, in the background, so the next call does not pay the
        # worker start-up (imports + warm-up, seconds) after a timeout. It stays counted as
        # busy until it is ready.
        threading.Thread(target=self._replace, daemon=True, name="flexent-worker-start").start()

    def _replace(self) -> None:
        try:
            worker = _Worker(self.preload, self.startup_timeout)
        except BaseException:
            worker = None
        with self._cond:
            self._starting -= 1
            self._busy -= 1
            if worker is not None:
                self._idle.append(worker)
            self._cond.notify_all()

    def _put_idle(self, worker: _Worker) -> None:
        with self._cond:
            self._busy -= 1
            self._idle.append(worker)
            self._cond.notify()

    def close(self) -> None:
        """Stop the idle workers (busy ones stop when their call returns)."""
        with self._cond:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()


_SHARED: dict[tuple[str, ...], WorkerPool] = {}
_SHARED_LOCK = threading.Lock()


def default_pool(preload: Sequence[str] = ()) -> WorkerPool:
    """The process-wide pool whose workers import the modules ``preload`` first (a caller names
    its own module, so that its imports never count as check time), closed at exit."""
    key = tuple(preload)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = pool = WorkerPool(preload=key)
            atexit.register(pool.close)
        return _SHARED[key]

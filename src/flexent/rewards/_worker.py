"""Worker process for :class:`flexent.rewards.timeout.WorkerPool` (``python -m`` entry point).

Protocol on stdin/stdout: :mod:`flexent.rewards._frames` (length-prefixed pickles).
The parent sends ``(fn, args)``; the worker answers ``("ok", result)`` or
``("error", "Type: message")``. Modules named on the command line are imported (and their
``worker_warmup()`` run, if they define one) before the worker answers ``("ready", None)``, so
import and first-use time never count against a timeout.
The worker's own stdout is redirected to stderr so stray prints cannot corrupt the protocol.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

from flexent.rewards._frames import recv, send


def main() -> None:
    with contextlib.suppress(BrokenPipeError):  # the parent went away: nothing to answer
        _serve()


def _serve() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    for name in sys.argv[1:]:
        module = importlib.import_module(name)
        warmup = getattr(module, "worker_warmup", None)
        if callable(warmup):
            warmup()
    send(out, ("ready", None))
    while (msg := recv(inp)) is not None:
        fn, args = msg
        try:
            reply = ("ok", fn(*args))
        except BaseException as e:  # report everything; the parent turns it into info["error"]
            reply = ("error", f"{type(e).__name__}: {e}")
        send(out, reply)


if __name__ == "__main__":
    main()

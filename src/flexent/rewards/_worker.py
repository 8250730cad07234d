"""Worker process for :class:`flexent.rewards.timeout.WorkerPool` (``python -m`` entry point).

Protocol on stdin/stdout: frames of an 8-byte big-endian length followed by a pickle.
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
import pickle
import struct
import sys
from typing import IO, Any

_HEADER = struct.Struct(">Q")


def send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def recv(stream: IO[bytes]) -> Any:
    """One frame, or ``None`` on end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


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

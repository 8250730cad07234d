"""The frames between :class:`flexent.rewards.timeout.WorkerPool` and its worker processes
(:mod:`flexent.rewards._worker`): an 8-byte big-endian length, then a pickle.

Its own module so that the parent side does not import the worker's ``python -m`` entry point
(runpy warns when a ``-m`` module is already imported by its package).
"""

from __future__ import annotations

import pickle
import struct
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

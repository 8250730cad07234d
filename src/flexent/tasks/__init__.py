"""Procedural tasks with exactly checkable answers (countdown, arithmetic).

Each task is deterministic from its seed: problem ``i`` depends only on ``(seed, i)``, and a
problem's split (``train``/``test``) is a hash of its content, so the splits are disjoint for
every seed.
"""

from __future__ import annotations

import hashlib


def split_of(key: str, test_fraction: float) -> str:
    """``"test"`` for a stable ``test_fraction`` share of problem keys, else ``"train"``.

    >>> split_of("3,7,25,50->75", 0.0), split_of("3,7,25,50->75", 1.0)
    ('train', 'test')
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction!r}")
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    return "test" if bucket < test_fraction else "train"

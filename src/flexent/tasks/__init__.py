"""Procedural tasks with exactly checkable answers (countdown, arithmetic).

Each task is deterministic from its seed: problem ``i`` depends only on ``(seed, i)``, and a
problem's split (``train``/``test``) is a hash of its content, so the splits are disjoint for
every seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

P = TypeVar("P")


def split_of(key: str, test_fraction: float) -> str:
    """``"test"`` for a stable ``test_fraction`` share of problem keys, else ``"train"``.

    >>> split_of("3,7,25,50->75", 0.0), split_of("3,7,25,50->75", 1.0)
    ('train', 'test')
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction!r}")
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    return "test" if bucket < test_fraction else "train"


# Consecutive draws without a new problem before ``take_split`` gives up.
MAX_MISSES = 20_000


def take_split(problems: Iterator[Any], n: int, *, split: str, test_fraction: float) -> list[Any]:
    """The first ``n`` distinct problems (by ``.key``) whose content hashes into ``split``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if test_fraction == (0.0 if split == "test" else 1.0):
        raise ValueError(f"split {split!r} is empty with test_fraction={test_fraction}")
    out: list = []
    seen: set[str] = set()
    misses = 0  # draws in a row that added nothing: the task space may be exhausted
    for p in problems:
        if len(out) >= n:
            break
        if p.key not in seen and split_of(p.key, test_fraction) == split:
            seen.add(p.key)
            out.append(p)
            misses = 0
        else:
            misses += 1
            if misses > MAX_MISSES:
                raise ValueError(
                    f"asked for {n} distinct {split!r} problems but found only {len(out)} after "
                    f"{MAX_MISSES} draws in a row without a new one: the task has too few "
                    "distinct problems (raise max_number/max_target or n_numbers, or ask for fewer)"
                )
    return out


class ProceduralTask(Generic[P]):
    """Base of the procedural tasks: a subclass defines ``problem(index)``, deterministic from
    its seed; iteration and split sampling are shared."""

    def problem(self, index: int) -> P:
        raise NotImplementedError

    def __iter__(self) -> Iterator[P]:
        index = 0
        while True:
            yield self.problem(index)
            index += 1

    def generate(self, n: int, *, split: str = "train", test_fraction: float = 0.1) -> list[P]:
        """``n`` distinct problems of ``split``; train and test never share a problem."""
        return take_split(iter(self), n, split=split, test_fraction=test_fraction)

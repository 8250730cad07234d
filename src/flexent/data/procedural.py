"""Procedural tasks as prompt datasets: rows for ``countdown`` and ``arithmetic``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flexent.tasks.arithmetic import ArithmeticTask
from flexent.tasks.countdown import CountdownTask

TASKS = {"countdown": CountdownTask, "arithmetic": ArithmeticTask}


def procedural_rows(
    name: str, *, n: int, split: str, seed: int, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``n`` rows of task ``name`` from ``split`` (``train``/``test``, disjoint for every seed).

    ``params`` go to the task constructor, except ``test_fraction`` (default 0.1), the share
    of all problems that hash into the test split.
    """
    params = dict(params)
    test_fraction = float(params.pop("test_fraction", 0.1))
    task_cls: type[CountdownTask] | type[ArithmeticTask] = TASKS[name]
    try:
        task = task_cls(seed=seed, **params)
    except TypeError as e:
        raise ValueError(f"task {name!r}: bad task_params {params}: {e}") from e
    return [p.row() for p in task.generate(n, split=split, test_fraction=test_fraction)]

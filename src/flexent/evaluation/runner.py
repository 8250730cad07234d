"""The evaluation loop: generate K samples per problem, score them, collect the results.

Benchmarks come from :func:`flexent.data.load_prompts` (a file, a built-in benchmark name or a
procedural task spec) and are scored with the matching reward from :mod:`flexent.rewards`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.evaluation.generation import Generator
from flexent.evaluation.results import ProblemResult, score_problem

# Procedural tasks have their own reward; every other benchmark is scored with `math`.
TASK_REWARDS = {"countdown": "countdown", "arithmetic": "arithmetic"}


@dataclass
class Benchmark:
    """A loaded benchmark: its display ``name``, where it came from, rows and reward name."""

    name: str
    source: str
    rows: list[dict[str, Any]]
    reward: str


def reward_for(source: str) -> str:
    """The reward name for a benchmark source: a procedural task's own reward, else ``math``.

    >>> reward_for("aime24"), reward_for("countdown"), reward_for("data/my_set.jsonl")
    ('math', 'countdown', 'math')
    """
    return TASK_REWARDS.get(source, "math")


def split_for(source: str, split: str | None) -> str | None:
    """The split to ask ``load_prompts`` for: none for a file (it has none), ``test`` for a
    procedural task unless given (the loader's default there is ``train``), else ``split``.

    >>> split_for("x.jsonl", "test"), split_for("countdown", None), split_for("gsm8k", None)
    (None, 'test', None)
    """
    if Path(source).suffix in (".jsonl", ".json", ".parquet"):
        return None
    if source in TASK_REWARDS and split is None:
        return "test"
    return split


def benchmark_name(source: str, taken: Sequence[str] = ()) -> str:
    """A short display name: a file's stem, else the source itself; made unique vs ``taken``.

    >>> benchmark_name("/data/math/aime24_test.jsonl"), benchmark_name("gsm8k", ["gsm8k"])
    ('aime24_test', 'gsm8k-2')
    """
    path = Path(source)
    name = path.stem if path.suffix in (".jsonl", ".json", ".parquet") else source
    base, i = name, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def run_benchmark(
    generator: Generator,
    bench: Benchmark,
    reward: Any,
    *,
    samples: int,
    keep_completions: bool = False,
    progress: Any = None,
) -> list[ProblemResult]:
    """Generate ``samples`` completions per row of ``bench`` and score them with ``reward``.

    ``progress`` is an optional tqdm-like object; its ``update(n)`` is called per batch.
    """
    if not bench.rows:
        raise ValueError(f"benchmark {bench.name!r} ({bench.source}) has no problems")
    prompts = [row["prompt"] for row in bench.rows]
    update = None if progress is None else progress.update
    completions = generator.generate(prompts, n=samples, progress=update)
    if len(completions) != len(prompts):
        raise RuntimeError(
            f"backend {generator.name} returned {len(completions)} completion lists for "
            f"{len(prompts)} prompts"
        )
    problems = []
    for i, (row, texts) in enumerate(zip(bench.rows, completions, strict=True)):
        result = score_problem(i, row, texts, reward)
        if keep_completions:
            result.completions = list(texts)
        problems.append(result)
    return problems

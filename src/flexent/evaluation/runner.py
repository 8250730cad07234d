"""The evaluation loop: load benchmarks, build a generation backend, generate K samples per
problem, score them, collect the results (``flexent eval`` and the training runs' held-out
evaluation both use it).

Benchmarks come from :func:`flexent.data.load_prompts` (a file, a built-in benchmark name or a
procedural task spec) and are scored with the matching reward from :mod:`flexent.rewards`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.data import BENCHMARKS, BOXED_INSTRUCTION, TASKS, load_prompts
from flexent.errors import UserError
from flexent.evaluation.generation import (
    Generator,
    SamplingConfig,
    TransformersGenerator,
    VLLMGenerator,
    vllm_available,
)
from flexent.evaluation.results import ProblemResult, score_problem
from flexent.models.loading import load_model_and_tokenizer

# Procedural tasks have their own reward; every other benchmark is scored with `math`.
TASK_REWARDS = {"countdown": "countdown", "arithmetic": "arithmetic"}


@dataclass
class Benchmark:
    """A loaded benchmark: its display ``name``, where it came from, rows and reward name;
    ``inferred`` says why the reward was read off the rows' columns (else empty)."""

    name: str
    source: str
    rows: list[dict[str, Any]]
    reward: str
    inferred: str = ""


def reward_for(source: str) -> str:
    """The reward name for a benchmark source: a procedural task's own reward, else ``math``.

    >>> reward_for("aime24"), reward_for("countdown"), reward_for("data/my_set.jsonl")
    ('math', 'countdown', 'math')
    """
    return TASK_REWARDS.get(source, "math")


def infer_reward(rows: Sequence[Mapping[str, Any]], source: str) -> tuple[str, str]:
    """``(reward name, why)`` for the rows of a file or dataset given without ``--reward``:
    a procedural task's reward when every row says so (a ``task`` column, or countdown's
    ``numbers`` and ``target``), else ``math``; rows that disagree are a UserError naming the
    choices.

    >>> infer_reward([{"numbers": [1, 2], "target": 3, "answer": "3"}], "cd.jsonl")[0]
    'countdown'
    >>> infer_reward([{"answer": "12"}], "gsm.jsonl")
    ('math', '')
    """
    tasks = [TASK_REWARDS.get(str(r.get("task"))) for r in rows]
    countdown = [all(c in r for c in ("numbers", "target")) for r in rows]
    if rows and tasks[0] is not None and all(t == tasks[0] for t in tasks):
        return tasks[0], f"its rows' task column says {tasks[0]}"
    if rows and all(countdown):
        return "countdown", "its rows have countdown's numbers and target columns"
    if not any(countdown) and not any(tasks):
        return "math", ""
    from flexent.rewards import list_rewards

    raise UserError(
        f"{source}: cannot tell which reward scores its rows (some carry a task's columns, "
        f"some do not); pass --reward, one of {list_rewards()} or a dotted import path"
    )


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
    on_problem: Callable[[ProblemResult, dict[str, Any]], None] | None = None,
    chunk: int = 64,
) -> list[ProblemResult]:
    """Generate ``samples`` completions per row of ``bench`` and score them with ``reward``,
    ``chunk`` prompts at a time; ``on_problem(result, row)`` is called as each problem is
    scored (e.g. to append it to a file, so a late failure keeps what was generated).

    ``progress`` is an optional tqdm-like object; its ``update(n)`` is called per batch.
    """
    if not bench.rows:
        raise ValueError(f"benchmark {bench.name!r} ({bench.source}) has no problems")
    update = None if progress is None else progress.update
    # chunks of whole generation batches, so the seeds are those of one call
    per = generator.prompts_per_batch(samples) if hasattr(generator, "prompts_per_batch") else 1
    chunk = max(per, chunk // per * per)
    problems: list[ProblemResult] = []
    for start in range(0, len(bench.rows), chunk):
        rows = bench.rows[start : start + chunk]
        completions = generator.generate(
            [r["prompt"] for r in rows], n=samples, progress=update, batch_offset=start // per
        )
        if len(completions) != len(rows):
            raise RuntimeError(
                f"backend {generator.name} returned {len(completions)} completion lists for "
                f"{len(rows)} prompts"
            )
        for i, (row, texts) in enumerate(zip(rows, completions, strict=True), start=start):
            result = score_problem(i, row, texts, reward)
            if keep_completions:
                result.completions = list(texts)
            problems.append(result)
            if on_problem is not None:
                on_problem(result, row)
    return problems


def pick_backend(name: str) -> str:
    """``transformers`` or ``vllm`` for ``name`` (``auto``: vllm when installed and a GPU is
    present)."""
    if name != "auto":
        return name
    if not vllm_available():
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def build_generator(
    model: str,
    sampling: SamplingConfig,
    *,
    backend: str = "auto",
    gguf_file: str | None = None,
    dtype: str = "auto",
    device: str | None = None,
    trust_remote_code: bool = False,
    batch_size: int = 16,
) -> Generator:
    """A generation backend for ``model`` (a directory, .gguf file or hub name). The
    transformers backend loads the model on ``device`` (default cuda when available, else cpu;
    ``dtype="auto"`` on the CPU means float32)."""
    if pick_backend(backend) == "vllm":
        return VLLMGenerator(model, sampling, dtype=dtype, trust_remote_code=trust_remote_code)
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = "float32" if dtype == "auto" and device == "cpu" else dtype
    model_obj, tokenizer = load_model_and_tokenizer(
        model, gguf_file=gguf_file, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    return TransformersGenerator(model_obj, tokenizer, sampling, batch_size=batch_size)


def load_benchmarks(
    sources: Sequence[str],
    *,
    chat: bool,
    reward: str | None = None,
    split: str | None = None,
    max_samples: int | None = None,
    instruction: str | None = None,
    system_prompt: str | None = None,
    data_dir: str | None = None,
    task_params: dict[str, Any] | None = None,
) -> list[Benchmark]:
    """Rows of every source via ``load_prompts``, each with its reward name (``reward`` for all,
    else :func:`reward_for`, and for a file or dataset :func:`infer_reward` from its
    columns). Math-scored benchmarks get the ``\\boxed{}`` instruction unless
    ``instruction`` is given (``""``: none). ``task_params`` go to the procedural tasks
    (``countdown``, ``arithmetic``) as in a training config's ``data.params``: ``seed`` is the
    task seed, the rest the task's constructor arguments; a bad one is a UserError."""
    params = dict(task_params or {})
    seed = params.pop("seed", 0)
    if task_params and not any(str(s) in TASKS for s in sources):
        raise UserError(
            f"--task-param is for the procedural tasks ({', '.join(sorted(TASKS))}); "
            f"none of {list(sources)} is one"
        )
    benches: list[Benchmark] = []
    for source in sources:
        procedural = {"seed": seed, "task_params": params} if str(source) in TASKS else {}
        kwargs = dict(split=split_for(source, split), max_samples=max_samples,
                      system_prompt=system_prompt, chat=chat, data_dir=data_dir, **procedural)  # fmt: skip
        reward_name, why, rows = reward or reward_for(source), "", None
        if reward is None and str(source) not in TASK_REWARDS and str(source) not in BENCHMARKS:
            rows = _load(source, instruction, kwargs)  # a file or dataset: its columns may tell
            reward_name, why = infer_reward(rows, str(source))
        text = instruction
        if text is None and reward_name == "math":
            text = BOXED_INSTRUCTION  # the math reward reads the last \boxed{}
        if rows is None or text != instruction:
            rows = _load(source, text, kwargs)
        name = benchmark_name(source, [b.name for b in benches])
        benches.append(Benchmark(name, source, rows, reward_name, why))
    return benches


def _load(source: str, instruction: str | None, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """``load_prompts(source, instruction=..., **kwargs)``; a procedural task's bad parameter
    is a UserError naming --task-param."""
    try:
        return load_prompts(source, instruction=instruction or None, **kwargs)
    except ValueError as err:
        if "task_params" not in kwargs or isinstance(err, UserError):
            raise
        raise UserError(f"--task-param for {source}: {err}") from None

"""Prompt datasets: ``load_prompts(source, ...)`` -> rows with ``prompt`` and ``answer``.

``source`` is a file (.jsonl/.json/.parquet), a built-in benchmark name (``gsm8k``,
``gsm8k_train``, ``math500``, ``aime24``, ``aime25``, ``amc23``, ``olympiadbench``; files found
in ``data_dir`` or ``$FLEXENT_DATA_DIR``), a procedural task (``countdown``, ``arithmetic``),
or a Hugging Face ``datasets`` name / local dataset directory. See docs/tasks.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexent.data.procedural import TASKS, procedural_rows
from flexent.data.rows import (
    ANSWER_FIELDS,
    PROMPT_FIELDS,
    Formatter,
    build_row,
    format_prompt,
)
from flexent.data.sources import (
    BENCHMARKS,
    DATA_DIR_ENV,
    FILE_SUFFIXES,
    DataError,
    Record,
    read_file,
    read_hf,
    resolve_benchmark,
)

__all__ = [
    "ANSWER_FIELDS",
    "BENCHMARKS",
    "BOXED_INSTRUCTION",
    "DATA_DIR_ENV",
    "PROMPT_FIELDS",
    "DataError",
    "LoadReport",
    "Prompts",
    "load_prompts",
]

logger = logging.getLogger(__name__)

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PROCEDURAL_DEFAULT_SIZE = 1000
_MAX_REPORTED = 20


@dataclass
class LoadReport:
    """What ``load_prompts`` read: rows kept, rows skipped and why (first 20 reasons)."""

    source: str
    n_rows: int = 0
    n_skipped: int = 0
    problems: list[str] = field(default_factory=list)


class Prompts(list):
    """The rows of ``load_prompts`` (a plain ``list[dict]``) plus ``.report`` and ``.where``:
    each row's origin (``file.jsonl:12``, ``file.parquet row 3``, ``countdown (train) row 5``;
    counted from 1) for messages about a row."""

    report: LoadReport
    where: list[str]


def load_prompts(
    source: str | os.PathLike,
    *,
    split: str | None = None,
    prompt_field: str | None = None,
    answer_field: str | None = None,
    max_samples: int | None = None,
    instruction: str | None = None,
    system_prompt: str | None = None,
    chat: bool = False,
    on_error: str = "raise",
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    task_params: Mapping[str, Any] | None = None,
) -> Prompts:
    """Load prompt rows: ``{"prompt": str | messages, "answer": str, **other columns}``.

    Args:
        split: dataset split (benchmarks: ``test``/``train`` where present; procedural tasks:
            ``train`` (default) or ``test``; HF datasets: default ``train``). Not allowed for a
            single file.
        prompt_field / answer_field: column names or dotted paths into nested columns
            (``reward_model.ground_truth``); by default the first present of
            ``PROMPT_FIELDS`` / ``ANSWER_FIELDS``.
        max_samples: keep at most this many rows (procedural tasks: this many are generated,
            default 1000).
        instruction: text appended to each problem on a new line (e.g. ``BOXED_INSTRUCTION``;
            for a chat-message prompt, to its last user message); if it contains
            ``{problem}``, it is the whole template instead.
        system_prompt: a system message (``chat=True``; it replaces a row's own) or a
            paragraph before the prompt.
        chat: ``prompt`` becomes chat messages: ``[{"role": "system", ...}, {"role": "user",
            ...}]`` for a string prompt, a row's message list as it is. Without ``chat`` a
            message list is rendered as text: system, then user contents, blank-line separated
            (see :mod:`flexent.data.rows`).
        on_error: ``"raise"``: a bad row raises :class:`DataError` naming file and line/row;
            ``"skip"``: bad rows are skipped, counted in ``result.report`` and logged.
        data_dir: where built-in benchmark files live (else ``$FLEXENT_DATA_DIR``).
        seed, task_params: procedural tasks only (``task_params`` go to the task constructor).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples!r}")
    name = str(source)
    report = LoadReport(source=name)

    def fmt(prompt: Any) -> Any:
        return format_prompt(
            prompt, instruction=instruction, system_prompt=system_prompt, chat=chat
        )

    if name in TASKS:
        rows = procedural_rows(
            name,
            n=PROCEDURAL_DEFAULT_SIZE if max_samples is None else max_samples,
            split=split or "train",
            seed=seed,
            params=task_params or {},
        )
        for row in rows:
            row["prompt"] = fmt(row["prompt"])
        where = [f"{name} ({split or 'train'}) row {i}" for i in range(1, len(rows) + 1)]
    else:
        records, defaults = _records(name, split, data_dir)
        fields = (prompt_field or defaults[0], answer_field or defaults[1])
        rows, where = _build_rows(records, fields, fmt, max_samples, on_error, report)
    report.n_rows = len(rows)
    if report.n_skipped:
        logger.warning(
            "load_prompts(%s): skipped %d bad rows (kept %d); first: %s",
            name,
            report.n_skipped,
            report.n_rows,
            report.problems[0],
        )
    out = Prompts(rows)
    out.report = report
    out.where = where
    return out


def _records(
    name: str, split: str | None, data_dir: str | os.PathLike | None
) -> tuple[Iterable[Record], tuple[str | None, str | None]]:
    """The records of a non-procedural source and its default (prompt, answer) fields."""
    if name in BENCHMARKS:
        bench = BENCHMARKS[name]
        path = resolve_benchmark(name, split, data_dir)
        return read_file(path), (bench.prompt_field, bench.answer_field)
    path = Path(os.path.expanduser(name))
    if path.is_file():
        if split is not None:
            raise DataError(f"{path}: split={split!r} given for a single file (it has no splits)")
        return read_file(path), (None, None)
    if path.suffix.lower() in FILE_SUFFIXES:
        raise DataError(f"data file not found: {path}")
    if not path.is_dir() and not hub_name(name):
        raise DataError(
            f"unknown data source {name!r}: not a file, a local dataset directory, a built-in "
            f"benchmark ({', '.join(sorted(BENCHMARKS))}) or a procedural task "
            f"({', '.join(sorted(TASKS))}); a Hugging Face hub dataset is named owner/name"
        )
    return read_hf(name, split), (None, None)


def hub_name(name: str) -> bool:
    """Whether ``name`` asks for a Hugging Face hub dataset: ``owner/name``, neither part a
    local path (``./x``, ``~/x``, ``/x``, a folder that exists here). Anything else that is
    not a local file or folder fails at once instead of waiting on hub retries.

    >>> hub_name("BytedTsinghua-SIA/DAPO-Math-17k"), hub_name("nosuchbench"), hub_name("./a/b")
    (True, False, False)
    """
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name):
        return False
    return not Path(name.split("/")[0]).is_dir()


def _build_rows(
    records: Iterable[Record],
    fields: tuple[str | None, str | None],
    fmt: Formatter,
    max_samples: int | None,
    on_error: str,
    report: LoadReport,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows built from ``records`` and each one's origin."""
    rows: list[dict[str, Any]] = []
    origins: list[str] = []
    for where, record in records:
        if max_samples is not None and len(rows) >= max_samples:
            break
        try:
            rows.append(build_row(record, fields, fmt))
            origins.append(where)
        except DataError as e:
            if on_error == "raise":
                raise DataError(f"{where}: {e}") from None
            report.n_skipped += 1
            if len(report.problems) < _MAX_REPORTED:
                report.problems.append(f"{where}: {e}")
    return rows, origins

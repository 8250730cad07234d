"""Prompt datasets: ``load_prompts(source, ...)`` -> rows with ``prompt`` and ``answer``.

``source`` is a file (.jsonl/.json/.parquet), a built-in benchmark name (``gsm8k``,
``gsm8k_train``, ``math500``, ``aime24``, ``aime25``, ``amc23``, ``olympiadbench``; files found
in ``data_dir`` or ``$FLEXENT_DATA_DIR``), a procedural task (``countdown``, ``arithmetic``),
or a Hugging Face ``datasets`` name / local dataset directory. See docs/tasks.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexent.data.procedural import TASKS, procedural_rows
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
from flexent.rewards.extract import normalize_gold

__all__ = [
    "BENCHMARKS",
    "BOXED_INSTRUCTION",
    "DATA_DIR_ENV",
    "DataError",
    "LoadReport",
    "Prompts",
    "load_prompts",
]

logger = logging.getLogger(__name__)

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PROMPT_FIELDS = ("prompt", "question", "problem", "query", "input")
ANSWER_FIELDS = ("answer", "final_answer", "solution", "ground_truth")
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
    """The rows of ``load_prompts`` (a plain ``list[dict]``) plus ``.report``."""

    report: LoadReport


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
        prompt_field / answer_field: column names; by default the first present of
            ``PROMPT_FIELDS`` / ``ANSWER_FIELDS``.
        max_samples: keep at most this many rows (procedural tasks: this many are generated,
            default 1000).
        instruction: text appended to each problem on a new line (e.g. ``BOXED_INSTRUCTION``);
            if it contains ``{problem}``, it is the whole template instead.
        system_prompt: a system message (``chat=True``) or a paragraph before the prompt.
        chat: ``prompt`` becomes ``[{"role": "system", ...}, {"role": "user", ...}]``.
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
    if name in TASKS:
        rows = procedural_rows(
            name,
            n=PROCEDURAL_DEFAULT_SIZE if max_samples is None else max_samples,
            split=split or "train",
            seed=seed,
            params=task_params or {},
        )
        for row in rows:
            row["prompt"] = _format(row["prompt"], instruction, system_prompt, chat)
    else:
        records, defaults = _records(name, split, data_dir)
        fields = (prompt_field or defaults[0], answer_field or defaults[1])
        rows = _build_rows(records, fields, max_samples, on_error, report)
        for row in rows:
            row["prompt"] = _format(row["prompt"], instruction, system_prompt, chat)
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
    return out


def _records(
    name: str, split: str | None, data_dir: str | os.PathLike | None
) -> tuple[Iterable[Record], tuple[str | None, str | None]]:
    """The records of a non-procedural source and its default (prompt, answer) fields."""
    if name in BENCHMARKS:
        bench = BENCHMARKS[name]
        path = resolve_benchmark(name, split, data_dir)
        return read_file(path), (bench.prompt_field, bench.answer_field)
    path = Path(name)
    if path.is_file():
        if split is not None:
            raise DataError(f"{path}: split={split!r} given for a single file (it has no splits)")
        return read_file(path), (None, None)
    if path.suffix.lower() in FILE_SUFFIXES:
        raise DataError(f"data file not found: {path}")
    return read_hf(name, split), (None, None)


def _build_rows(
    records: Iterable[Record],
    fields: tuple[str | None, str | None],
    max_samples: int | None,
    on_error: str,
    report: LoadReport,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for where, record in records:
        if max_samples is not None and len(rows) >= max_samples:
            break
        try:
            rows.append(_row(record, fields))
        except DataError as e:
            if on_error == "raise":
                raise DataError(f"{where}: {e}") from None
            report.n_skipped += 1
            if len(report.problems) < _MAX_REPORTED:
                report.problems.append(f"{where}: {e}")
    return rows


def _row(
    record: dict[str, Any] | Exception, fields: tuple[str | None, str | None]
) -> dict[str, Any]:
    if isinstance(record, Exception):
        raise DataError(str(record))
    if not isinstance(record, Mapping):
        raise DataError(f"row is a {type(record).__name__}, not an object")
    pkey = _field(record, fields[0], PROMPT_FIELDS, "prompt")
    akey = _field(record, fields[1], ANSWER_FIELDS, "answer")
    problem, raw = record[pkey], record[akey]
    if not isinstance(problem, str) or not problem.strip():
        raise DataError(f"field {pkey!r} must be a non-empty string, got {problem!r:.80}")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise DataError(f"field {akey!r} must be a string or number, got {type(raw).__name__}")
    answer = normalize_gold(str(raw))
    if not answer:
        raise DataError(f"field {akey!r} is empty")
    row = {k: v for k, v in record.items() if k not in (pkey, akey)}
    row.setdefault("problem", problem)
    if answer != str(raw).strip():
        row.setdefault("solution", raw)  # keep the worked solution the gold came from
    row["prompt"], row["answer"] = problem, answer
    return row


def _field(
    record: Mapping[str, Any], explicit: str | None, candidates: tuple[str, ...], what: str
) -> str:
    if explicit is not None:
        if explicit not in record:
            raise DataError(f"missing {what} field {explicit!r} (row has {sorted(record)})")
        return explicit
    for key in candidates:
        if key in record:
            return key
    raise DataError(
        f"no {what} field: expected one of {list(candidates)}, row has {sorted(record)}"
    )


def _format(problem: str, instruction: str | None, system_prompt: str | None, chat: bool) -> Any:
    if instruction:
        text = (
            instruction.replace("{problem}", problem)
            if "{problem}" in instruction
            else f"{problem}\n{instruction}"
        )
    else:
        text = problem
    if chat:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return [*messages, {"role": "user", "content": text}]
    return f"{system_prompt}\n\n{text}" if system_prompt else text

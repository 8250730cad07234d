"""Where prompt rows come from: files, built-in benchmark names, HF datasets, procedural tasks.

Every reader yields ``(where, record)`` pairs; ``where`` names the file and line/row
(``"gsm8k_test.jsonl:12"``) and ``record`` is a dict, or the exception that made the row
unreadable (a JSON decode error), so the caller decides whether to raise or skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexent.errors import UserError, json_error

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
DATA_DIR_ENV = "FLEXENT_DATA_DIR"
Record = tuple[str, "dict[str, Any] | Exception"]


class DataError(UserError):
    """A data source or row is unusable; the message names the file and line/row."""


@dataclass(frozen=True)
class Benchmark:
    """A built-in benchmark: file name per split and its field names."""

    files: Mapping[str, str]
    default_split: str
    prompt_field: str = "problem"
    answer_field: str = "answer"
    extra: Mapping[str, Any] = field(default_factory=dict)


# Files as described in docs/tasks.md ("Built-in benchmarks"); GSM8K golds end in "#### N".
BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark(
        {"test": "gsm8k_test.jsonl", "train": "gsm8k_train.jsonl"}, "test", "question"
    ),
    "gsm8k_train": Benchmark({"train": "gsm8k_train.jsonl"}, "train", "question"),
    "math500": Benchmark({"test": "math500_test.jsonl"}, "test"),
    "aime24": Benchmark({"test": "aime24_test.jsonl"}, "test"),
    "aime25": Benchmark({"test": "aime25_test.jsonl"}, "test"),
    "amc23": Benchmark({"test": "amc23_test.jsonl"}, "test"),
    "olympiadbench": Benchmark({"test": "olympiadbench_test.jsonl"}, "test"),
}


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where built-in benchmark files are looked for, in order: ``data_dir``,
    ``$FLEXENT_DATA_DIR``, ``./data``, ``~/.cache/flexent/data`` (each also with ``math/``)."""
    roots = [Path(d) for d in (data_dir, os.environ.get(DATA_DIR_ENV)) if d]
    roots += [Path("data"), Path.home() / ".cache" / "flexent" / "data"]
    return [r / sub for r in roots for sub in ("", "math")]


def resolve_benchmark(name: str, split: str | None, data_dir: str | os.PathLike | None) -> Path:
    """The file of built-in benchmark ``name`` in the first of :func:`data_dirs` holding it."""
    bench = BENCHMARKS[name]
    split = split or bench.default_split
    if split not in bench.files:
        raise DataError(f"benchmark {name!r} has no split {split!r}; splits: {sorted(bench.files)}")
    filename = bench.files[split]
    tried = data_dirs(data_dir)
    for folder in tried:
        if (folder / filename).is_file():
            return folder / filename
    raise DataError(
        f"benchmark {name!r} ({split}): {filename} not found in {', '.join(map(str, tried))}; "
        f"pass --data-dir (flexent eval) / data.params.data_dir, or set {DATA_DIR_ENV}"
    )


def read_file(path: Path) -> Iterator[Record]:
    """Records of a .jsonl / .json / .parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    elif suffix == ".parquet":
        yield from _read_parquet(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {FILE_SUFFIXES}")


def _read_jsonl(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                problem = json_error(path, e, line=lineno).split(": ", 1)[1]
                yield f"{path}:{lineno}", DataError(problem)


def _read_json(path: Path) -> Iterator[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(json_error(path, e)) from None
    if not isinstance(data, list):
        raise DataError(
            f"{path}: a .json file must hold a list of objects, got {type(data).__name__}"
        )
    for i, row in enumerate(data, start=1):
        yield f"{path} row {i}", row


def _read_parquet(path: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from e
    table = pq.read_table(path)
    for i, row in enumerate(table.to_pylist(), start=1):
        yield f"{path} row {i}", row


def read_hf(name: str, split: str | None) -> Iterator[Record]:
    """Records of a Hugging Face ``datasets`` dataset (hub name or local dataset directory)."""
    split = split or "train"
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"{name!r}: loading a dataset by name needs `datasets` ({e})") from e
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:
        raise DataError(
            f"could not load {name!r}: it is not a file, not a built-in name "
            f"({sorted(BENCHMARKS)}, countdown, arithmetic), and loading it as a Hugging Face "
            f"dataset (split {split!r}) failed: {type(e).__name__}: {e}"
        ) from e
    for i, row in enumerate(ds, start=1):
        yield f"{name}[{split}] row {i}", row

"""Reading run directories: ``metrics.jsonl``, ``config.yaml`` and evaluation results.

A run directory (as written by ``flexent train``) may hold:

- ``metrics.jsonl``: one JSON object per line, ``{"step": int, "<metric key>": number, ...}``.
  Blank lines are skipped; non-numeric values (strings, null, booleans) are ignored; lines that
  share a step are merged, a later line winning (a resumed run may log a step again).
- ``config.yaml``: its ``entropy_control.strategy`` names the strategy in legends.
- ``eval/results.json``: the output of ``flexent eval RUN_DIR/final --out RUN_DIR/eval``.
- ``eval.json``: the trainer's own held-out evaluation (``final.accuracy``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexent.errors import UserError, json_error
from flexent.evaluation.results import load_results


class RunDirError(UserError):
    """Not a readable run directory: missing, no ``metrics.jsonl``, a file that does not parse;
    the message names the path (and line)."""


class MetricsFormatError(RunDirError):
    """A malformed metrics file; the message names the file and the line."""


@dataclass
class Run:
    """One training run: its display ``label``, metric records sorted by step, eval results."""

    name: str
    path: Path
    strategy: str | None = None
    records: list[dict[str, float]] = field(default_factory=list)
    eval_results: dict[str, Any] | None = None
    train_eval: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """``name (strategy)``, or just ``name`` when the strategy is unknown or the same."""
        if self.strategy and self.strategy != self.name:
            return f"{self.name} ({self.strategy})"
        return self.name

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """``(steps, values)`` of metric ``key`` over the records that log it."""
        pairs = [(r["step"], r[key]) for r in self.records if key in r]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def has(self, key: str) -> bool:
        return any(key in r for r in self.records)


def read_metrics(path: str | Path, notes: list[str] | None = None) -> list[dict[str, float]]:
    """Parse a ``metrics.jsonl`` file into records sorted by step (see the module docstring).

    A last line that is not valid JSON is the torn write of a killed run: it is dropped, with
    a note appended to ``notes``; an invalid line anywhere else raises
    :class:`MetricsFormatError` naming the file and line."""
    by_step: dict[int, dict[str, float]] = {}
    for _, record in metrics_lines(path, notes):
        values = _numeric(record)
        by_step.setdefault(int(values["step"]), {}).update(values)
    return [by_step[s] for s in sorted(by_step)]


def metrics_lines(
    path: str | Path, notes: list[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """``(raw line, parsed object)`` of every non-blank line of a metrics file, with the
    torn-last-line rule of :func:`read_metrics` (the dropped line is not returned)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise MetricsFormatError(
            f"{file}: not a text file (byte {err.start} is not UTF-8)"
        ) from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    out = []
    for i, (lineno, line) in enumerate(lines):
        try:
            obj = _parse_line(line, file, lineno)
        except MetricsFormatError:
            if i == len(lines) - 1 and not _is_json(line):
                if notes is not None:
                    notes.append(f"{file}:{lineno}: last line is cut short (a killed run); dropped")
                break
            raise
        out.append((line, obj))
    return out


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _parse_line(line: str, file: Path, lineno: int) -> dict[str, Any]:
    where = f"{file}:{lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise MetricsFormatError(json_error(file, err, line=lineno)) from None
    if not isinstance(obj, dict):
        raise MetricsFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    step = obj.get("step")
    if isinstance(step, bool) or not isinstance(step, int | float) or step != int(step):
        raise MetricsFormatError(f"{where}: missing or non-integer 'step' (got {step!r})")
    return obj


def _numeric(obj: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in obj.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def read_strategy(config_path: Path) -> str | None:
    """``entropy_control.strategy`` from a run's ``config.yaml`` (None if absent)."""
    if not config_path.is_file():
        return None
    # (lazy: flexent.config imports torch)
    from flexent.config import read_yaml

    cfg = read_yaml(config_path, error=RunDirError)
    section = cfg.get("entropy_control") if isinstance(cfg, dict) else None
    strategy = section.get("strategy") if isinstance(section, dict) else None
    return str(strategy) if strategy else None


def load_run(
    run_dir: str | Path, *, name: str | None = None, notes: list[str] | None = None
) -> Run:
    """Load a run directory; ``metrics.jsonl`` is required, the rest optional."""
    path = Path(run_dir)
    if not path.is_dir():
        what = "is a file, not a run directory" if path.exists() else "run directory not found"
        raise RunDirError(f"{path}: {what}" if path.exists() else f"{what}: {path}")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise RunDirError(f"{path} has no metrics.jsonl (is it a flexent run directory?)")
    results = path / "eval" / "results.json"
    train_eval = path / "eval.json"
    return Run(
        name=name or path.resolve().name,
        path=path,
        strategy=read_strategy(path / "config.yaml"),
        records=read_metrics(metrics, notes),
        eval_results=load_results(results) if results.is_file() else None,
        train_eval=_read_json(train_eval) if train_eval.is_file() else None,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunDirError(json_error(path, err)) from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not a JSON text file (not UTF-8)") from None
    return data if isinstance(data, dict) else None

"""Training reports: PNG figures from run directories plus a ``report.md`` summary.

``make_report(run_dirs, out_dir)`` reads each run's ``metrics.jsonl`` (and ``config.yaml``,
``eval/results.json``, ``eval.json`` when present; see :mod:`flexent.report.runs`), draws one
figure per metric group with every run overlaid (:data:`flexent.report.figures.FIGURES`), a
pass@k figure from evaluation results, and writes ``report.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.evaluation.results import load_results
from flexent.report.figures import FIGURES, plot_figure, plot_pass_at_k
from flexent.report.runs import MetricsFormatError, Run, load_run, read_metrics
from flexent.report.summary import write_report_md

__all__ = ["MetricsFormatError", "Report", "Run", "load_run", "make_report", "read_metrics"]


@dataclass
class Report:
    """What :func:`make_report` wrote: figure files, ``report.md`` and notes on skipped parts."""

    figures: list[Path]
    report: Path
    notes: list[str]


def make_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    eval_results: Sequence[tuple[str, str | Path]] = (),
) -> Report:
    """Figures and ``report.md`` for ``run_dirs`` in ``out_dir``.

    ``eval_results`` adds ``(label, results.json path)`` pairs to the pass@k figure, besides
    each run's own ``eval/results.json``.
    """
    if not run_dirs:
        raise ValueError("make_report: give at least one run directory")
    notes: list[str] = []
    runs = [load_run(d, notes=notes) for d in run_dirs]
    _dedupe_names(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    for spec in FIGURES:
        path, spec_notes = plot_figure(spec, runs, out)
        notes += spec_notes
        if path is not None:
            written.append((spec.title, path))
    curves: list[tuple[str, dict[str, Any]]] = [
        (r.label, r.eval_results) for r in runs if r.eval_results is not None
    ]
    curves += [(label, load_results(p)) for label, p in eval_results]
    path, pass_notes = plot_pass_at_k(curves, out)
    notes += pass_notes
    if path is not None:
        written.append(("pass@k", path))
    report = write_report_md(out, runs, written, notes)
    return Report(figures=[p for _, p in written], report=report, notes=notes)


def _dedupe_names(runs: list[Run]) -> None:
    """Runs from directories with the same name get their parent folder prefixed."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"

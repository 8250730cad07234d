"""``summary.md`` and plots of a ``flexent demo`` run, from :mod:`flexent.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flexent.report import Run, load_run, make_report
from flexent.report.summary import tail_mean


def _at(run: Run, key: str, where: str) -> str:
    steps, values = run.series(key)
    if not steps:
        return "n/a"
    i = {"start": 0, "mid": len(steps) // 2, "end": len(steps) - 1}[where]
    return f"{values[i]:.3f} (step {int(steps[i])})"


def _mean(run: Run, key: str) -> float:
    return tail_mean(run.series(key)[1], 1.0) or 0.0


def write_summary(run_dir: Path, evals: dict[str, Any], *, elapsed_s: float, command: str) -> Path:
    """Write ``summary.md`` (and ``flexent report``'s figures into ``report/``)."""
    run = load_run(run_dir)
    report = make_report([run_dir], run_dir / "report")
    figures = [str(p.relative_to(run_dir)) for p in report.figures]
    start, final = evals.get("start", {}), evals.get("final", {})
    where = ("start", "mid", "end")
    entropy = ", ".join(f"{w} {_at(run, 'entropy/mean', w)}" for w in where)
    reward = ", ".join(f"{w} {_at(run, 'reward/mean', w)}" for w in where)
    text = [
        "# flexent demo summary",
        "",
        f"Command: `{command}`; wall time {elapsed_s:.0f} s; {len(run.records)} GRPO steps.",
        "",
        "| | start | final |",
        "|---|---|---|",
        f"| held-out accuracy (greedy, {start.get('num_problems', '?')} problems) | "
        f"{start.get('accuracy', float('nan')):.3f} | {final.get('accuracy', float('nan')):.3f} |",
        "",
        f"Mean token entropy of the trained-on batches (`entropy/mean`): {entropy}.",
        "",
        f"Rollout reward (`reward/mean`): {reward}.",
        "",
        f"Clipped tokens: mean `clip/frac_high` {_mean(run, 'clip/frac_high'):.4f}, "
        f"mean `clip/frac_low` {_mean(run, 'clip/frac_low'):.4f}.",
        "",
        *[f"![{f}]({f})" for f in figures],
        "",
        "Sample completions of the final model:",
        "",
        *[f"- `{e['prompt']}` -> `{e['completion']}`" for e in final.get("examples", [])],
        "",
    ]
    path = run_dir / "summary.md"
    path.write_text("\n".join(text))
    return path

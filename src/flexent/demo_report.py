"""``summary.md`` and plots of a ``flexent demo`` run (numbers read from the run directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _series(lines: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(x["step"], x[key]) for x in lines if isinstance(x.get(key), (int, float))]


def _at(series: list[tuple[int, float]], where: str) -> str:
    if not series:
        return "n/a"
    i = {"start": 0, "mid": len(series) // 2, "end": len(series) - 1}[where]
    return f"{series[i][1]:.3f} (step {series[i][0]})"


def plot(run_dir: Path) -> list[str]:
    """``flexent report`` on this run into ``run_dir/report``; figure paths relative to the run."""
    from flexent.report import make_report

    report = make_report([run_dir], run_dir / "report")
    return [str(p.relative_to(run_dir)) for p in report.figures]


def write_summary(run_dir: Path, evals: dict[str, Any], *, elapsed_s: float, command: str) -> Path:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    figures = plot(run_dir)
    entropy = _series(lines, "entropy/mean")
    reward = _series(lines, "reward/mean")
    start, final = evals.get("start", {}), evals.get("final", {})
    clip_hi = [x for _, x in _series(lines, "clip/frac_high")]
    clip_lo = [x for _, x in _series(lines, "clip/frac_low")]
    text = [
        "# flexent demo summary",
        "",
        f"Command: `{command}`; wall time {elapsed_s:.0f} s; {len(lines)} GRPO steps.",
        "",
        "| | start | final |",
        "|---|---|---|",
        f"| held-out accuracy (greedy, {start.get('num_problems', '?')} problems) | "
        f"{start.get('accuracy', float('nan')):.3f} | {final.get('accuracy', float('nan')):.3f} |",
        "",
        "Mean token entropy of the trained-on batches (`entropy/mean`): "
        f"start {_at(entropy, 'start')}, mid {_at(entropy, 'mid')}, end {_at(entropy, 'end')}.",
        "",
        f"Rollout reward (`reward/mean`): start {_at(reward, 'start')}, mid {_at(reward, 'mid')}, "
        f"end {_at(reward, 'end')}.",
        "",
        f"Clipped tokens: mean `clip/frac_high` {sum(clip_hi) / max(len(clip_hi), 1):.4f}, "
        f"mean `clip/frac_low` {sum(clip_lo) / max(len(clip_lo), 1):.4f}.",
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

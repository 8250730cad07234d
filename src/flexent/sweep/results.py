"""The numbers of a sweep's finished runs, per arm and seed (read by :mod:`.compare`, the
sweep's figures and the demo's summary).

Per run (``flexent.report.load_run``):

- entropy at 25/50/75/100 % of training: mean of ``entropy/mean`` over a window of
  ``max(1, round(0.05 T))`` logged steps ending at that point (T = logged steps), so one noisy
  step does not decide it;
- early / final reward: mean ``reward/mean`` over the first 25 % / last 10 % of steps;
- clip fractions: mean ``clip/frac_high`` / ``clip/frac_low`` over all steps;
- held-out: ``eval.json`` of the run (``final``: accuracy = first sample correct, pass@k);
  ``step-N`` entries (``evaluation.steps``) give mid-training pass@k;
- ``target`` runs: the last ``control/tracking_error``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flexent.report import Run, load_run
from flexent.sweep.runner import is_done
from flexent.sweep.spec import SweepSpec
from flexent.sweep.stats import Interval, mean_interval

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class ArmResult:
    """An arm's per-seed values (``values[name] = [one per seed]``) and the seeds' runs."""

    name: str
    runs: list[Run] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def interval(self, key: str) -> Interval:
        return mean_interval(self.values.get(key, []))


def window_mean(values: Sequence[float], p: float, frac: float = 0.05) -> float:
    """Mean of the ``max(1, round(frac * n))`` values ending at position ``round(p * n)``.

    >>> window_mean([0.0] * 10 + [1.0] * 10, 1.0), window_mean(list(range(20)), 0.5)
    (1.0, 9.0)
    """
    n = len(values)
    if n == 0:
        return math.nan
    end = max(1, round(p * n))
    width = max(1, round(frac * n))
    window = values[max(0, end - width) : end]
    return sum(window) / len(window)


def training_order(stages: Iterable[str]) -> list[str]:
    """Evaluation stage names in training order: ``start``, ``step-N`` by N, ``final``.

    >>> training_order(["final", "step-64", "start", "step-192"])
    ['start', 'step-64', 'step-192', 'final']
    """
    found = set(stages)
    steps = sorted((s for s in found if s.startswith("step-")), key=lambda s: int(s[5:]))
    rest = sorted(found - {"start", "final", *steps})
    return [s for s in ("start", *steps, "final") if s in found] + rest


def _span_mean(values: Sequence[float], start: float, stop: float) -> float:
    part = values[int(start * len(values)) : max(int(start * len(values)) + 1,
                                                 math.ceil(stop * len(values)))]  # fmt: skip
    return sum(part) / len(part) if part else math.nan


def run_values(run: Run) -> dict[str, float]:
    """The per-run numbers of the module docstring, by name."""
    out: dict[str, float] = {}
    entropy = run.series("entropy/mean")[1]
    for p in FRACTIONS:
        out[f"entropy@{int(100 * p)}%"] = window_mean(entropy, p)
    reward = run.series("reward/mean")[1]
    out["reward early"] = _span_mean(reward, 0.0, 0.25)
    out["reward final"] = _span_mean(reward, 0.9, 1.0)
    for key in ("clip/frac_high", "clip/frac_low"):
        values = run.series(key)[1]
        out[key] = sum(values) / len(values) if values else math.nan
    tracking = run.series("control/tracking_error")[1]
    if tracking:
        out["tracking error"] = tracking[-1]
    for stage, result in (run.train_eval or {}).items():
        if isinstance(result, dict):
            out.update(_eval_values(stage, result))
    return out


def _eval_values(stage: str, result: dict[str, Any]) -> dict[str, float]:
    out = {}
    if isinstance(result.get("accuracy"), (int, float)):
        out[f"{stage} accuracy"] = float(result["accuracy"])
    for key, value in (result.get("metrics") or {}).items():
        if key.startswith(("pass@", "mean@")) and isinstance(value, (int, float)):
            out[f"{stage} {key}"] = float(value)
    return out


def collect(spec: SweepSpec) -> tuple[list[ArmResult], list[str]]:
    """Every arm's finished runs and values; notes name the runs that are missing."""
    arms: dict[str, ArmResult] = {a.name: ArmResult(a.name) for a in spec.arms()}
    notes = []
    for run in spec.runs():
        if not is_done(run):
            notes.append(f"`{run.name}` is not finished: left out")
            continue
        loaded = load_run(run.run_dir, name=f"{run.arm}/seed{run.seed}")
        arm = arms[run.arm]
        arm.runs.append(loaded)
        for key, value in run_values(loaded).items():
            arm.values.setdefault(key, []).append(value)
    return list(arms.values()), notes

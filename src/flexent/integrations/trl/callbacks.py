"""Trainer callbacks of ``flexent train``: ``metrics.jsonl``, the progress bar and the
held-out evaluations during training."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

# TRL / transformers log key -> flexent metric key (docs/metrics.md); others pass unchanged.
RENAME = {
    "reward": "reward/mean",
    "reward_std": "reward/std",
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/lr",
    "entropy": None,  # TRL's name for entropy/mean; the flexent key is logged too
    "epoch": "train/epoch",
}
SKIP_LOGS = ("train_runtime",)  # the end-of-training summary record
# Logged by TRL only on steps that generate; they describe the generation batch that later
# steps of the same batch train on, so they are carried forward to those steps.
ROLLOUT_PREFIXES = (
    "reward/",
    "rewards/",
    "completions/",
    "frac_reward_zero_std",
    "entropy/rollout",
)


def flexent_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """Numeric, finite-or-NaN-as-null metrics with flexent key names."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        name = RENAME.get(key, key)
        if name is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[name] = float(value)
    return out


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``step`` (a resumed run logs the later ones
    again); a torn last line of a killed run is dropped with a warning."""
    if not path.exists():
        return
    import warnings

    from flexent.report.runs import metrics_lines

    notes: list[str] = []
    lines = metrics_lines(path, notes)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    kept = [raw for raw, obj in lines if obj["step"] <= step]
    path.write_text("".join(f"{line}\n" for line in kept))


class MetricsJsonlCallback(TrainerCallback):
    """Appends one JSON line per logged optimizer step to ``path``.

    On resume, lines of steps after the checkpoint's ``global_step`` (logged by the killed run
    but lost with it) are dropped first, so the file has every completed step exactly once.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rollout: dict[str, float | None] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            truncate_metrics(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or any(k in logs for k in SKIP_LOGS):
            return
        if any(k.startswith("eval_") for k in logs):
            return
        record: dict[str, Any] = {"step": int(state.global_step)}
        metrics = flexent_metrics(logs)
        if "reward/mean" in metrics:  # a step that generated: new rollout metrics
            self._rollout = {k: v for k, v in metrics.items() if k.startswith(ROLLOUT_PREFIXES)}
        for key, value in {**self._rollout, **metrics}.items():
            record[key] = None if value is None or not math.isfinite(value) else value
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class ProgressBarCallback(TrainerCallback):
    """tqdm bar over optimizer steps with reward, entropy and ETA (replaces transformers')."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", unit="step"
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        post = {}
        for key, label in (("reward", "reward"), ("entropy/mean", "entropy"), ("loss", "loss")):
            if isinstance(logs.get(key), (int, float)):
                post[label] = f"{logs[key]:.3g}"
        if post:
            self.bar.set_postfix(post, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MidTrainingEval(TrainerCallback):
    """Calls ``evaluate(f"step-{N}", model, tokenizer)`` when the optimizer step reaches one of
    ``steps`` (``evaluation.steps``: e.g. pass@k at mid-training, METHOD §6: step 120 of 400)."""

    def __init__(self, evaluate: Callable[..., None], steps: list[int], trainer: Any) -> None:
        self.evaluate, self.steps, self.trainer = evaluate, set(steps), trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps and state.is_world_process_zero:
            t = self.trainer
            self.evaluate(f"step-{state.global_step}", t.model, t.processing_class)


class RunTensorBoard(TrainerCallback):
    """TensorBoard event files in ``log_dir`` (``trainer.report_to`` with ``tensorboard``).

    The writer is created when training begins, not before (so a run that fails in set-up
    leaves no folder), with ``purge_step`` = the step a resumed run continues from + 1: events
    the killed run logged after its checkpoint are dropped instead of appearing twice.
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from torch.utils.tensorboard import SummaryWriter

        purge = state.global_step + 1 if state.global_step > 0 else None
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.writer is None or not logs:
            return
        for key, value in flexent_metrics(logs).items():
            if math.isfinite(value):
                self.writer.add_scalar(key, value, state.global_step)
        self.writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

"""Trainer callbacks of ``flexent train``: ``metrics.jsonl``, the progress bar, the held-out
evaluations during training, the stop on Ctrl-C / SIGTERM and the rollout buffer in
checkpoints."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from flexent.errors import Interrupted

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
    "advantage/",
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


def truncate_metrics(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the lines of ``metrics.jsonl`` up to ``step`` (a resumed run logs the later ones
    again); a torn last line of a killed run is dropped with a warning. Returns the records
    kept."""
    if not path.exists():
        return []
    import warnings

    from flexent.report.runs import metrics_lines

    notes: list[str] = []
    lines = metrics_lines(path, notes)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    kept = [(raw, obj) for raw, obj in lines if obj["step"] <= step]
    path.write_text("".join(f"{raw}\n" for raw, _ in kept))
    return [obj for _, obj in kept]


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
            kept = truncate_metrics(self.path, state.global_step)
            # a resume inside a generation batch: its first steps repeat that batch's metrics
            last = kept[-1] if kept else {}
            self._rollout = {k: v for k, v in last.items() if k.startswith(ROLLOUT_PREFIXES)}

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
    ``steps`` (``evaluation.steps``: e.g. pass@k at mid-training, docs/method.md §6: step 120 of 400)."""

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


class StopOnSignal(TrainerCallback):
    """Ctrl-C (SIGINT) and SIGTERM in ``flexent train``.

    During training the first signal asks for a stop: the current optimizer step finishes,
    a checkpoint is saved (TRL's, with flexent's strategy state) and training ends, so
    ``flexent train ... --resume`` continues from that step; :attr:`signum` says which
    signal. A second signal, or the first outside training (the model loading, the start and
    final evaluations), stops at once: the handler raises :class:`flexent.errors.Interrupted`.
    The same signal arriving twice within :attr:`DUPLICATE_S` seconds counts once: a terminal
    sends Ctrl-C to every process of its group, and ``flexent sweep`` / ``flexent demo`` pass
    it on to their runs as well. Under several processes the ranks agree at each step end
    (the stop happens after the same step everywhere).
    """

    DUPLICATE_S = 0.5

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self.notify = notify
        self.signum: int | None = None
        self.trainer: Any = None  # set by the caller for the ranks' agreement
        self._training = False
        self._last = -math.inf
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        """The handlers in place for the block (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.DUPLICATE_S:
            return  # one request delivered twice (process group + a forwarding parent)
        self._last = now
        if self.signum is None and self._training:
            self.signum = signum
            if self.notify is not None:
                self.notify(
                    f"{signal.Signals(signum).name}: stopping after the current optimizer step, "
                    "with a checkpoint (again to stop at once)"
                )
            return
        self.signum = signum
        raise Interrupted(signum)

    def requested(self) -> bool:
        """Whether a stop was asked for, in any process."""
        asked = self.signum is not None
        accelerator = getattr(self.trainer, "accelerator", None)
        if accelerator is None or accelerator.num_processes <= 1:
            return asked
        import torch

        flag = torch.tensor([float(asked)], device=accelerator.device)
        return bool(accelerator.gather(flag).max().item() > 0)

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested():
            control.should_save = True
            control.should_training_stop = True
            if self.signum is None:  # another rank's signal: remember it for the exit code
                self.signum = signal.SIGINT

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False


BUFFER_FILE = "rollout_buffer-rank{rank}.pt"


class RolloutBufferCheckpoint(TrainerCallback):
    """Saves TRL's generation batch in checkpoints taken in the middle of one, and restores it.

    TRL generates a batch every ``steps_per_generation * num_iterations`` micro-steps and
    trains on slices of it in between (``GRPOTrainer._buffered_inputs``, indexed by its
    micro-step counter ``_step``), and does not checkpoint it: a run resumed from a checkpoint
    inside a batch generated a fresh batch there and kept regenerating off the original
    schedule. A checkpoint saved mid-batch (an interrupt, or ``save_steps`` that is not a
    multiple of the optimizer steps per batch) gets the buffer and the counter
    (``rollout_buffer-rank<R>.pt``, one per process); a resume from it restores them, so it
    trains on what the uninterrupted run did. Relies on TRL 1.16's two private attributes.
    """

    def __init__(self, trainer: Any, resume_from: str | Path | None) -> None:
        self.trainer = trainer
        self.resume_from = None if resume_from is None else Path(resume_from)

    def _file(self, folder: Path) -> Path:
        return folder / BUFFER_FILE.format(rank=self.trainer.accelerator.process_index)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from is None or not self._file(self.resume_from).is_file():
            return
        import torch

        saved = torch.load(
            self._file(self.resume_from), map_location=self.trainer.accelerator.device,
            weights_only=False,
        )  # fmt: skip
        if saved.get("global_step") == state.global_step:
            self.trainer._step = saved["step"]
            self.trainer._buffered_inputs = saved["buffer"]

    def on_save(self, args, state, control, **kwargs):
        t = self.trainer
        every = args.steps_per_generation * t.num_iterations
        if t._buffered_inputs is None or t._step % every == 0:
            return  # a batch boundary: the resume generates, as the run would have
        import torch

        path = self._file(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        tmp = path.with_suffix(".tmp")
        torch.save(
            {"global_step": state.global_step, "step": t._step, "buffer": t._buffered_inputs},
            tmp,
        )
        tmp.replace(path)

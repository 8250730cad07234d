"""One GRPO run on one machine: config -> run directory (the body of ``flexent train``).

Run directory (``output.dir``)::

    config.yaml        resolved config (load_config reads it back)
    metrics.jsonl      one JSON line per optimizer step (keys: docs/metrics.md)
    eval.json          held-out evaluation of the initial and final model (evaluation.*)
    tensorboard/       TensorBoard event files
    checkpoint-<N>/    TRL/transformers checkpoints, each with flexent_state.json
    final/             final model + tokenizer (LoRA: the adapter and flexent_base.json, the
                       base model it belongs to; flexent eval loads it merged)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.config import FlexentConfig, entropy_control, save_config
from flexent.errors import UserError
from flexent.evaluation import SamplingConfig, TransformersGenerator, default_ks
from flexent.evaluation.generation import context_overflow
from flexent.evaluation.results import benchmark_metrics
from flexent.evaluation.runner import Benchmark, run_benchmark
from flexent.integrations.trl.callbacks import (
    MetricsJsonlCallback,
    MidTrainingEval,
    ProgressBarCallback,
    RolloutBufferCheckpoint,
    RunTensorBoard,
    StopOnSignal,
    truncate_metrics,
)
from flexent.integrations.trl.checkpoints import checkpoint_step
from flexent.integrations.trl.preflight import Plan, preflight
from flexent.integrations.trl.trainer import FlexentGRPOTrainer
from flexent.models.loading import load_model_and_tokenizer
from flexent.models.lora import write_lora_base
from flexent.rewards import get_reward


@dataclass
class RunResult:
    """What :func:`run_training` did: ``status`` is ``trained`` (to ``trainer.max_steps``),
    ``completed`` (the last checkpoint was at max_steps: final model and evaluation only),
    ``complete`` (nothing left to do; the model was not loaded) or ``interrupted`` (stopped
    by signal ``signum`` after a checkpoint; ``flexent train ... --resume`` continues)."""

    run_dir: Path
    global_step: int
    eval: dict[str, Any]
    status: str = "trained"
    signum: int | None = None


def build_trainer(
    cfg: FlexentConfig, run_dir: Path, plan: Plan, stop: StopOnSignal | None = None
) -> Any:
    """A ``FlexentGRPOTrainer`` for ``cfg`` writing into ``run_dir`` (created later, by the
    caller: nothing here writes files), with ``stop`` (Ctrl-C / SIGTERM) among its callbacks.
    A model that does not load is a UserError."""
    from datasets import Dataset
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOConfig

    model, tokenizer = _load_model(cfg)
    trainer_kwargs = {"logging_steps": 1, "save_strategy": "steps", **trainer_defaults(cfg.trainer)}
    report_to = list(trainer_kwargs.pop("report_to", ["tensorboard"]))
    # TensorBoard is flexent's (run_dir/tensorboard, purged past the step a resume starts
    # from); every other integration (wandb, mlflow, trackio, ...) is TRL's own
    args = GRPOConfig(
        output_dir=str(run_dir), report_to=[r for r in report_to if r != "tensorboard"],
        **trainer_kwargs,
    )  # fmt: skip
    callbacks: list[Any] = [MetricsJsonlCallback(run_dir / "metrics.jsonl"), ProgressBarCallback()]
    if "tensorboard" in report_to:
        callbacks.append(RunTensorBoard(run_dir / "tensorboard"))
    trainer = FlexentGRPOTrainer(
        model=model,
        reward_funcs=[plan.reward],
        args=args,
        train_dataset=Dataset.from_list(plan.rows),
        processing_class=tokenizer,
        peft_config=_peft_config(cfg),
        callbacks=callbacks,
        entropy_control=entropy_control(cfg),
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(RolloutBufferCheckpoint(trainer, plan.checkpoint))
    if stop is not None:
        stop.trainer = trainer
        trainer.add_callback(stop)
    warn_long_prompts(tokenizer, model, plan.rows, cfg)
    return trainer


def _load_model(cfg: FlexentConfig) -> tuple[Any, Any]:
    m = cfg.model
    try:
        return load_model_and_tokenizer(
            m.path, gguf_file=m.gguf_file, dtype=m.dtype, trust_remote_code=m.trust_remote_code
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model.path {m.path}: cannot load the model: {first}") from None


def warn_long_prompts(
    tokenizer: Any, model: Any, rows: list[dict[str, Any]], cfg: FlexentConfig
) -> None:
    """Warn once when prompts plus completions do not fit the model's context."""
    import warnings

    found = context_overflow(
        tokenizer, model, [r["prompt"] for r in rows], max_completion_length(cfg)
    )
    if found is None:
        return
    warnings.warn(
        f"{found.describe('max_completion_length')}; "
        "such steps are far slower and the model sees positions it was not trained on: "
        "drop or shorten the long prompts in the data (or data.instruction / "
        "data.system_prompt), or lower trainer.max_completion_length",
        UserWarning,
        stacklevel=2,
    )


def trainer_defaults(trainer: dict[str, Any], *, cuda: bool | None = None) -> dict[str, Any]:
    """``trainer`` (GRPOConfig fields) with ``bf16`` defaulted to False for a CPU run.

    TRL's ``GRPOConfig`` defaults ``bf16=True``; on a CPU without bf16 matrix units accelerate's
    bf16 autocast then runs every matmul in emulated bf16 (a 2-core SmolLM2-135M run did not
    finish one GRPO step in 7 minutes). An explicit ``bf16`` in ``trainer`` is kept.

    >>> trainer_defaults({"use_cpu": True})
    {'bf16': False, 'use_cpu': True}
    >>> trainer_defaults({"bf16": True, "use_cpu": True})
    {'bf16': True, 'use_cpu': True}
    >>> trainer_defaults({}, cuda=True)
    {}
    """
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    on_cpu = bool(trainer.get("use_cpu", False)) or not cuda
    return {"bf16": False, **trainer} if on_cpu and "bf16" not in trainer else dict(trainer)


def _peft_config(cfg: FlexentConfig) -> Any:
    lora = cfg.model.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    modules: Any = lora.target_modules
    if modules == ["all-linear"]:
        modules = "all-linear"
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=modules,
        task_type="CAUSAL_LM",
    )


def run_training(
    cfg: FlexentConfig,
    *,
    resume: bool = False,
    allow_config_change: bool = False,
    notify: Callable[[str], None] | None = None,
) -> RunResult:
    """Train per ``cfg``; ``resume=True`` continues from the run directory's last checkpoint.

    Every check that needs no model runs first (:func:`preflight`), then the model loads; the
    run directory is created only after that, and removed again when this call created it and
    fails before training starts, so a mistake leaves nothing behind. A resumed run whose last
    checkpoint is already at ``trainer.max_steps`` trains no further: when ``final/`` and the
    final evaluation are there too it is complete and nothing loads, else (killed during its
    final save or evaluation) it loads that checkpoint and completes what is missing.
    SIGINT / SIGTERM during training stop after the current step with a checkpoint
    (:class:`StopOnSignal`); ``notify`` receives one-line progress notes.
    """
    say = notify or (lambda message: None)
    plan = preflight(cfg, resume=resume, allow_config_change=allow_config_change)
    run_dir, ckpt = plan.run_dir, plan.checkpoint
    done_steps = checkpoint_step(ckpt) if ckpt is not None else 0
    finished = 0 < int(cfg.trainer.get("max_steps") or 0) <= done_steps
    if finished and run_complete(cfg, run_dir):
        truncate_metrics(run_dir / "metrics.jsonl", done_steps)  # a torn last line, if any
        evals = _read_evals(run_dir) if cfg.evaluation.enabled else {}
        return RunResult(run_dir, done_steps, evals, status="complete")
    if finished:
        say(
            f"checkpoint-{done_steps} is at trainer.max_steps: completing final/ and the final "
            "evaluation, without training"
        )
    warm_up = getattr(plan.reward, "warm_up", None)
    if callable(warm_up):
        warm_up()  # the reward's checker process (math) starts while the model loads
    stop = StopOnSignal(notify)
    with stop.installed():
        return _train(cfg, plan, stop, resume=resume)


def _train(cfg: FlexentConfig, plan: Plan, stop: StopOnSignal, *, resume: bool) -> RunResult:
    run_dir, ckpt = plan.run_dir, plan.checkpoint
    trainer = build_trainer(cfg, run_dir, plan, stop)
    created = not run_dir.exists()
    started = False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Under `accelerate launch` every process runs this: one writes files and evaluates.
        main = trainer.accelerator.is_main_process
        if main:
            save_config(cfg, run_dir / "config.yaml")
        evals = EvalLog(cfg, run_dir / "eval.json", plan.eval_rows, keep=resume)
        if main and cfg.evaluation.enabled and cfg.evaluation.at_start:
            evals.run("start", trainer.model, trainer.processing_class)
        if main and cfg.evaluation.enabled and cfg.evaluation.steps:
            trainer.add_callback(MidTrainingEval(evals.run, cfg.evaluation.steps, trainer))
        trainer.accelerator.wait_for_everyone()
        started = True
        if ckpt is not None and checkpoint_step(ckpt) >= int(trainer.args.max_steps):
            trainer._load_from_checkpoint(str(ckpt))  # finished: weights only, no further step
            trainer.state.global_step = checkpoint_step(ckpt)
            truncate_metrics(run_dir / "metrics.jsonl", trainer.state.global_step)
            status = "completed"
        else:
            trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
            status = "trained"
    except BaseException:
        if created and not started:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    step = int(trainer.state.global_step)
    if stop.signum is not None:
        return RunResult(run_dir, step, evals.results, status="interrupted", signum=stop.signum)
    if cfg.output.save_final_model:
        trainer.save_model(str(run_dir / "final"))
        if main and cfg.model.lora.enabled:
            write_lora_base(run_dir / "final", cfg.model.path, cfg.model.gguf_file)
    if main and cfg.evaluation.enabled:
        evals.run("final", trainer.model, trainer.processing_class, again=True)
    trainer.accelerator.wait_for_everyone()
    return RunResult(run_dir, step, evals.results, status=status)


def run_complete(cfg: FlexentConfig, run_dir: Path) -> bool:
    """Whether a run whose last checkpoint is at ``trainer.max_steps`` has everything else:
    ``final/`` with model weights (when ``output.save_final_model``) and the final evaluation
    in ``eval.json`` (when ``evaluation.enabled``; it is written last)."""
    final = run_dir / "final"
    if cfg.output.save_final_model and not any(
        p.suffix in (".safetensors", ".bin") for p in (final.iterdir() if final.is_dir() else ())
    ):
        return False
    return not cfg.evaluation.enabled or "final" in _read_evals(run_dir)


def _read_evals(run_dir: Path) -> dict[str, Any]:
    """``eval.json`` by stage, or ``{}`` when it is missing or torn."""
    try:
        evals = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return evals if isinstance(evals, dict) else {}


class EvalLog:
    """``eval.json``: held-out results by stage (``start``, ``step-N``, ``final``), rewritten
    after each evaluation; with ``keep`` an earlier attempt's stages are kept (a resumed run)."""

    def __init__(
        self, cfg: FlexentConfig, path: Path, rows: list[dict[str, Any]], *, keep: bool
    ) -> None:
        self.cfg, self.path, self.rows = cfg, path, rows
        self.results: dict[str, Any] = (
            json.loads(path.read_text()) if keep and path.exists() else {}
        )

    def run(self, stage: str, model: Any, tokenizer: Any, *, again: bool = False) -> None:
        """Evaluate ``model`` as ``stage`` unless that stage is recorded (or ``again``)."""
        if stage in self.results and not again:
            return
        self.results[stage] = evaluate(self.cfg, model, tokenizer, self.rows)
        self.path.write_text(json.dumps(self.results, indent=1))


def evaluate(
    cfg: FlexentConfig, model: Any, tokenizer: Any, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Held-out evaluation of the in-memory ``model`` with :mod:`flexent.evaluation` (the code
    of ``flexent eval``): ``accuracy`` (the first sample of each problem correct), ``mean_at_n``
    and ``metrics`` (mean@n, pass@k for k = 1, 2, 4, ..., n, maj@n), plus three examples."""
    e = cfg.evaluation
    bench = Benchmark("held-out", str(e.source or cfg.data.source), rows, cfg.reward.name)
    sampling = SamplingConfig(
        temperature=e.temperature, top_p=e.top_p, top_k=e.top_k,
        max_new_tokens=e.max_new_tokens or max_completion_length(cfg),
    )  # fmt: skip
    generator = TransformersGenerator(model, tokenizer, sampling, batch_size=e.batch_size)
    was_training = model.training
    model.eval()
    try:
        problems = run_benchmark(
            generator, bench, get_reward(cfg.reward.name, **cfg.reward.params),
            samples=e.num_samples, keep_completions=True,
        )  # fmt: skip
    finally:
        model.train(was_training)
    metrics = benchmark_metrics(problems, default_ks(e.num_samples))
    first = [p.scores[0] is not None and p.scores[0] >= 1.0 for p in problems]
    return {
        "num_problems": len(problems),
        "num_samples": e.num_samples,
        "accuracy": sum(first) / len(problems),
        "mean_at_n": metrics[f"mean@{e.num_samples}"],
        "metrics": metrics,
        "examples": [
            {"prompt": str(r["prompt"]), "completion": (p.completions or [""])[0]}
            for r, p in zip(bench.rows[:3], problems[:3], strict=True)
        ],
    }


def max_completion_length(cfg: FlexentConfig) -> int:
    """``trainer.max_completion_length``, or GRPOConfig's own default when the config omits it."""
    from trl import GRPOConfig

    default = GRPOConfig.__dataclass_fields__["max_completion_length"].default
    return int(cfg.trainer.get("max_completion_length", default))

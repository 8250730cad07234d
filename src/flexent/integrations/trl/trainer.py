"""``FlexentGRPOTrainer``: flexent's entropy control inside TRL's ``GRPOTrainer``.

``FlexentGRPOTrainer`` is a ``trl.GRPOTrainer`` whose policy loss is a registered flexent loss
with per-token thresholds ``eps_low, eps_high`` from ``DynamicThresholds`` evaluated on pi_old,
mixed by the strategy's ``(w_up, w_low)`` at ``state.global_step``. Everything else is TRL's:
generation, rewards, advantages, its loss normalisation (``args.loss_type`` picks it), the KL
term (``beta``), vLLM importance-sampling correction, the off-policy sequence mask, the
top-entropy token mask, peft/LoRA, gradient accumulation and accelerate multi-process.

How it departs from / relies on TRL 1.16 (read its ``grpo_trainer.py``):

- TRL only computes ``old_per_token_logps`` when ``gradient_accumulation_steps`` is not a
  multiple of ``steps_per_generation * num_iterations``; otherwise every generation batch feeds
  exactly one optimizer step, the ratio is exactly 1 and *no* clip acts (docs/method.md §1). The
  trainer warns or raises (``EntropyControl.on_inert``) naming the setting to change.
- The strategy needs the rollout entropy H_k before step k's loss. When TRL computes pi_old's
  log-probs we ask that same forward pass for the entropy too (no extra cost); otherwise one
  extra no-grad forward measures it.
- ``loss_type`` ``cispo``/``sapo``/``vespo`` are TRL's own *losses*, not normalisations, and TRL's
  entropy bonus (``entropy_coef``) is not combined with a flexent loss: both are refused (use
  flexent's ``sapo`` loss or ``entropy_bonus`` instead).
- The per-step control (weights, entropy bonus, checkpoint state) is flexent's engine-neutral
  :class:`~flexent.control.StepController`; its state is written to ``flexent_state.json`` in
  every checkpoint and read back on resume.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

try:
    from trl import GRPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("flexent.integrations.trl needs TRL: pip install 'flexent[trl]'") from exc

from flexent.control import (
    STATE_FILE,
    EntropyControl,
    StepController,
    StepGenerators,
    handle_inert,
    loss_arguments,
)
from flexent.diagnostics import entropy_second_term
from flexent.integrations.trl.advantages import check_trl_advantage_args, recompute_advantages
from flexent.integrations.trl.loss import compute_flexent_loss
from flexent.losses import get_policy_loss, loss_traits

__all__ = [
    "STATE_FILE",
    "FlexentGRPOTrainer",
    "check_trainer_args",
    "clipping_is_inert",
    "inert_message",
]
NORMALISATIONS = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
# TRL's normalisation (loss_type) -> the flexent aggregation mode it computes.
AGG_OF_LOSS_TYPE = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
    "dapo": "token-mean",
    "luspo": "seq-mean-token-sum",
}


def clipping_is_inert(args: Any) -> bool:
    """True when each generation batch feeds exactly one optimizer step (ratio == 1).

    TRL regenerates every ``steps_per_generation * num_iterations`` micro-steps and steps the
    optimizer every ``gradient_accumulation_steps``; when the latter is a multiple of the former
    the policy never changes between sampling and the loss.

    >>> from types import SimpleNamespace as NS
    >>> clipping_is_inert(NS(gradient_accumulation_steps=4, steps_per_generation=4, num_iterations=1))
    True
    >>> clipping_is_inert(NS(gradient_accumulation_steps=1, steps_per_generation=4, num_iterations=1))
    False
    >>> clipping_is_inert(NS(gradient_accumulation_steps=2, steps_per_generation=2, num_iterations=2))
    False
    """
    spg = args.steps_per_generation or args.gradient_accumulation_steps
    return bool(args.gradient_accumulation_steps % (spg * args.num_iterations) == 0)


def inert_message(args: Any) -> str:
    ga = args.gradient_accumulation_steps
    spg = args.steps_per_generation or ga
    return (
        "flexent: PPO clipping is inert with this configuration: gradient_accumulation_steps="
        f"{ga} is a multiple of steps_per_generation * num_iterations = {spg} * "
        f"{args.num_iterations}, so every generation batch feeds exactly one optimizer step, the "
        "ratio pi_theta/pi_old is exactly 1 and no threshold (hence no entropy-control strategy) "
        "has any effect. Set trainer.steps_per_generation to a multiple of "
        f"gradient_accumulation_steps larger than it (e.g. {2 * ga}) or trainer.num_iterations > 1."
    )


def check_trainer_args(args: Any, control: EntropyControl) -> list[str]:
    """The TRL settings that a flexent loss does not apply, for a ``GRPOConfig`` (or any object
    with its fields) ``args`` and the run's ``control``.

    Raises ``ValueError`` for a setting that would silently change what is trained: a
    ``loss_type`` that is a TRL loss rather than a normalisation, sequence-level importance
    ratios, TRL's two-sided clip ``delta``, TRL's entropy bonus. Returns warnings (possibly
    none) for the rest: TRL's ``epsilon`` (ignored), a normalisation other than the loss
    paper's, token-level widths for a sequence-level loss. The trainer calls it when built;
    ``flexent train`` calls it on its config before the model loads.

    >>> from types import SimpleNamespace as NS
    >>> trl_defaults = dict(loss_type="dapo", importance_sampling_level="token", delta=None,
    ...                     epsilon=0.2, epsilon_high=None, entropy_coef=0.0,
    ...                     use_adaptive_entropy=False)
    >>> check_trainer_args(NS(**trl_defaults), EntropyControl())
    []
    >>> cispo = NS(**{**trl_defaults, "loss_type": "cispo"})
    >>> check_trainer_args(cispo, EntropyControl())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: trainer.loss_type='cispo' is a TRL loss, not a normalisation; ...
    >>> wide = NS(**{**trl_defaults, "epsilon": 0.3})
    >>> check_trainer_args(wide, EntropyControl())  # doctest: +ELLIPSIS
    ["trainer.epsilon=0.3 / epsilon_high=None are TRL's clip and are ignored: ..."]
    """
    refusal = _refusal(args)
    if refusal:
        raise ValueError(refusal)
    check_trl_advantage_args(args, control.advantage)
    messages = []
    if args.epsilon != 0.2 or args.epsilon_high not in (None, args.epsilon):
        messages.append(
            f"trainer.epsilon={args.epsilon} / epsilon_high={args.epsilon_high} are TRL's clip "
            "and are ignored: flexent's thresholds come from entropy_control.thresholds "
            "(e.g. eps_std: [0.2, 0.28])"
        )
    th = control.thresholds
    checks = control.check_aggregation(AGG_OF_LOSS_TYPE[args.loss_type])
    checks += control.check_eps_scale(th.std_eps(upper=False), th.std_eps(upper=True))
    return messages + [f"{msg} (TRL: trainer.loss_type)" for msg in checks]


def _refusal(args: Any) -> str | None:
    """Why ``check_trainer_args`` refuses ``args``, or None."""
    if args.loss_type not in NORMALISATIONS:
        return (
            f"trainer.loss_type={args.loss_type!r} is a TRL loss, not a normalisation; with "
            f"flexent choose one of {list(NORMALISATIONS)} and set entropy_control.loss"
        )
    level = getattr(args, "importance_sampling_level", "token")
    if level != "token":
        return (
            f"trainer.importance_sampling_level={level!r} is not applied by flexent's losses "
            "(token-level ratios); for sequence-level ratios set entropy_control.loss=gspo"
        )
    if getattr(args, "delta", None) is not None:
        return (
            "trainer.delta (TRL's two-sided clip) is not applied by flexent's losses; use "
            "entropy_control.loss_params.clip_c (ppo_clip's dual clip) instead"
        )
    # TRL's GRPOTrainer: _entropy_bonus_enabled = entropy_coef != 0.0 or use_adaptive_entropy
    if getattr(args, "entropy_coef", 0.0) != 0.0 or getattr(args, "use_adaptive_entropy", False):
        return (
            "TRL's entropy bonus (trainer.entropy_coef / use_adaptive_entropy) is not combined "
            "with a flexent loss; set trainer.entropy_coef=0 and use_adaptive_entropy=false "
            "(flexent's own: entropy_control.entropy_coef / adaptive_entropy)"
        )
    return None


class FlexentGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with flexent's thresholds, strategy, loss and diagnostics.

    Same arguments as ``GRPOTrainer`` plus ``entropy_control`` (an ``EntropyControl``).
    """

    def __init__(self, *args: Any, entropy_control: EntropyControl | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.entropy_control = entropy_control or EntropyControl()
        self._check_supported()
        self._loss_fn = get_policy_loss(self.entropy_control.loss)
        self._loss_traits = loss_traits(self.entropy_control.loss)
        self._rewards_per_func: torch.Tensor | None = None
        # T is TRL's max_steps, known in train(): the controller builds the strategy then.
        self.controller = StepController(self.entropy_control)
        self.generators = StepGenerators(int(self.args.seed), int(self.accelerator.process_index))
        self._capture: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if clipping_is_inert(self.args):
            handle_inert(self.entropy_control.on_inert, inert_message(self.args))

    @property
    def rollout_entropy(self) -> float | None:
        """The mean token entropy of the last generation batch (pi_old's)."""
        return self.controller.rollout_entropy

    # -- configuration checks -------------------------------------------------------------
    def _check_supported(self) -> None:
        for message in check_trainer_args(self.args, self.entropy_control):
            warnings.warn(message, UserWarning, stacklevel=3)

    # -- the step's control ----------------------------------------------------------------
    def step_control(self, mode: str) -> StepController:
        """The controller with this optimizer step's weights and bonus (fixed at the step's
        first micro-batch, its ``control/*`` metrics logged then)."""
        controller = self.controller
        if mode == "train":
            self._ensure_total_steps()
            if controller.begin_step(int(self.state.global_step)):
                for key, value in controller.metrics().items():
                    self._metrics[mode][key].append(value)
        return controller

    # -- rollout entropy (pi_old) -----------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):  # type: ignore[override]
        capture = self._capture
        if capture is not None and not capture and model is self.model:
            # First policy forward of a generation batch = TRL's pi_old log-probs: also take H.
            kwargs["compute_entropy"] = True
            logps, entropies, aux = super()._get_per_token_logps_and_entropies(
                model, *args, **kwargs
            )
            capture.append((logps, entropies))
            return logps, None, aux
        return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)

    def _generate_and_score_completions(self, inputs):  # type: ignore[override]
        self._capture = []
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            capture, self._capture = self._capture, None
        if self.entropy_control.advantage:
            if self._rewards_per_func is None:
                raise RuntimeError("TRL computed advantages without _calculate_rewards")
            recompute_advantages(self, out, self._rewards_per_func, self.entropy_control.advantage)
        old = out.get("old_per_token_logps")
        if capture and old is not None and capture[0][0] is old:
            entropies = capture[0][1]
        else:
            entropies = self._rollout_entropies(out)
        mask = self._loss_mask(out)
        totals = torch.stack([(entropies * mask).sum(), mask.sum().float()])
        totals = self.accelerator.reduce(totals, reduction="sum")
        if self.model is not None and self.model.training:
            self.controller.observe_entropy(float((totals[0] / totals[1].clamp(min=1.0)).item()))
        out["flexent_old_entropy"] = entropies
        if self.entropy_control.log_pred_dh_full or self._loss_traits.needs_old_second_term:
            out["flexent_old_second_term"] = self._rollout_second_term(out)
        return out

    def _calculate_rewards(self, *args, **kwargs):  # type: ignore[override]
        # kept for a flexent advantage estimator (TRL does not return the rewards)
        self._rewards_per_func = super()._calculate_rewards(*args, **kwargs)
        return self._rewards_per_func

    @torch.no_grad()
    def _rollout_second_term(self, out: dict[str, Any]) -> torch.Tensor:
        """pi_old's ``sum_x p_x^2 (ln p_x + H)`` per completion token (the distribution-wide part
        of the first-order entropy change): one no-grad forward with the full logits, divided by
        the sampling temperature as TRL's log-probs are."""
        input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention_mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        keep = out["completion_ids"].size(1)
        size = self.args.per_device_train_batch_size
        model: Any = self.model
        parts = []
        for start in range(0, input_ids.size(0), size):
            logits = model(
                input_ids=input_ids[start : start + size],
                attention_mask=attention_mask[start : start + size],
                logits_to_keep=keep + 1,
            ).logits[:, :-1]
            parts.append(entropy_second_term(logits.float() / self.temperature))
        return torch.cat(parts)

    @torch.no_grad()
    def _rollout_entropies(self, out: dict[str, Any]) -> torch.Tensor:
        input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention_mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        _, entropies, _ = super()._get_per_token_logps_and_entropies(
            self.model,
            input_ids,
            attention_mask,
            out["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size,
            compute_entropy=True,
        )
        return entropies

    @staticmethod
    def _loss_mask(inputs: Mapping[str, Any]) -> torch.Tensor:
        mask = inputs["completion_mask"]
        return mask if "tool_mask" not in inputs else mask * inputs["tool_mask"]

    # -- the loss ---------------------------------------------------------------------------
    def loss_arguments(
        self, entropies: torch.Tensor, inputs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``loss_params`` plus what the loss's traits ask for: this step's generator, the
        current policy's per-token ``entropies``, pi_old's per-token entropy and second term
        (from the micro-batch ``inputs``, where the generation step stored them)."""
        step, device = int(self.state.global_step), self.accelerator.device
        inputs = inputs or {}
        return loss_arguments(
            self.entropy_control.loss,
            self.entropy_control.loss_params,
            generator=lambda: self.generators.get(step, device),
            entropy=entropies,
            old_entropy=inputs.get("flexent_old_entropy"),
            old_second_term=inputs.get("flexent_old_second_term"),
        )

    def _compute_loss(self, model, inputs):  # type: ignore[override]
        return compute_flexent_loss(self, model, inputs)

    # -- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):  # type: ignore[override]
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._ensure_total_steps()
        self.controller.save(os.path.join(self._get_output_dir(trial=trial), folder))

    def _issue_warnings_after_load(self, load_result):  # type: ignore[no-untyped-def]
        """A checkpoint of a model with tied input/output embeddings does not store the tied
        copy (``lm_head.weight``), so transformers warns on every resume that it is "missing";
        it is restored by tying, not lost: tie and stay quiet in exactly that case."""
        model: Any = self.model
        missing = set(load_result.missing_keys)
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        if missing and tied and missing <= {"lm_head.weight"} and not load_result.unexpected_keys:
            model.tie_weights()
            return
        super()._issue_warnings_after_load(load_result)

    def _load_optimizer_and_scheduler(self, checkpoint):  # type: ignore[override]
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._ensure_total_steps()
            self.controller.load(checkpoint)

    def _ensure_total_steps(self) -> None:
        if int(self.state.max_steps) > 0:
            self.controller.set_total_steps(int(self.state.max_steps))

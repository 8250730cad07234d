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
  exactly one optimizer step, the ratio is exactly 1 and *no* clip acts (METHOD §1). The trainer
  warns or raises (``EntropyControl.on_inert``) naming the setting to change.
- The strategy needs the rollout entropy H_k before step k's loss. When TRL computes pi_old's
  log-probs we ask that same forward pass for the entropy too (no extra cost); otherwise one
  extra no-grad forward measures it.
- ``loss_type`` ``cispo``/``sapo``/``vespo`` are TRL's own *losses*, not normalisations, and TRL's
  entropy bonus (``entropy_coef``) is not combined with a flexent loss: both are refused (use
  flexent's ``sapo`` loss or ``entropy_bonus`` instead).
- The strategy state (with the last rollout entropy) is written to ``flexent_state.json`` in
  every checkpoint and read back on resume.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

try:
    from trl import GRPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("flexent.integrations.trl needs TRL: pip install 'flexent[trl]'") from exc

from flexent.control import EntropyControl, handle_inert

STATE_FILE = "flexent_state.json"
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


class FlexentGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with flexent's thresholds, strategy, loss and diagnostics.

    Same arguments as ``GRPOTrainer`` plus ``entropy_control`` (an ``EntropyControl``).
    """

    def __init__(self, *args: Any, entropy_control: EntropyControl | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from flexent.losses import get_policy_loss

        self.entropy_control = entropy_control or EntropyControl()
        self._check_supported()
        self._loss_fn = get_policy_loss(self.entropy_control.loss)
        strategy = self.entropy_control.strategy
        self.strategy: Any = None if isinstance(strategy, str) else strategy
        self._pending_strategy_state: dict[str, Any] | None = None
        self._weights_step = -1
        self._weights = (0.0, 0.0)
        self.rollout_entropy: float | None = None
        self._capture: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._generator: tuple[int, torch.Generator] | None = None
        self._bonus = 0.0  # the strategy's entropy-bonus coefficient of the step (target)
        self.adaptive_entropy = self.entropy_control.build_adaptive_entropy()
        self._adaptive_coef = 0.0  # its coefficient applied at this step
        if clipping_is_inert(self.args):
            handle_inert(self.entropy_control.on_inert, inert_message(self.args))

    # -- configuration checks -------------------------------------------------------------
    def _check_supported(self) -> None:
        if self.loss_type not in NORMALISATIONS:
            raise ValueError(
                f"trainer.loss_type={self.loss_type!r} is a TRL loss, not a normalisation; with "
                f"flexent choose one of {list(NORMALISATIONS)} and set entropy_control.loss"
            )
        args: Any = self.args  # a GRPOConfig (typed as TrainingArguments by transformers)
        if getattr(args, "importance_sampling_level", "token") != "token":
            raise ValueError(
                "trainer.importance_sampling_level="
                f"{args.importance_sampling_level!r} is not applied by flexent's losses "
                "(token-level ratios); for sequence-level ratios set entropy_control.loss=gspo"
            )
        if getattr(args, "delta", None) is not None:
            raise ValueError(
                "trainer.delta (TRL's two-sided clip) is not applied by flexent's losses; use "
                "entropy_control.loss_params.clip_c (ppo_clip's dual clip) instead"
            )
        if args.epsilon != 0.2 or args.epsilon_high not in (None, args.epsilon):
            warnings.warn(
                f"trainer.epsilon={args.epsilon} / epsilon_high={args.epsilon_high} "
                "are TRL's clip and are ignored: flexent's thresholds come from "
                "entropy_control.thresholds (e.g. eps_std: [0.2, 0.28])",
                UserWarning,
                stacklevel=3,
            )
        if getattr(self, "_entropy_bonus_enabled", False):
            raise ValueError(
                "TRL's entropy bonus (trainer.entropy_coef / adaptive entropy) is not combined "
                "with a flexent loss; set trainer.entropy_coef=0"
            )
        ec = self.entropy_control
        th = ec.thresholds
        messages = ec.check_aggregation(AGG_OF_LOSS_TYPE[self.loss_type])
        messages += ec.check_eps_scale(th.std_eps(upper=False), th.std_eps(upper=True))
        for msg in messages:
            warnings.warn(f"{msg} (TRL: trainer.loss_type)", UserWarning, stacklevel=3)

    # -- strategy ---------------------------------------------------------------------------
    def _ensure_strategy(self) -> Any:
        if self.strategy is None:
            ec = self.entropy_control
            if "total_steps" not in ec.strategy_params and int(self.state.max_steps) <= 0:
                raise ValueError(
                    "the strategy needs total_steps: the trainer's max_steps is not known yet "
                    "(call train()) and entropy_control.strategy_params has no total_steps"
                )
            self.strategy = ec.build_strategy(total_steps=int(self.state.max_steps))
        if self._pending_strategy_state is not None:
            self.strategy.load_state_dict(self._pending_strategy_state)
            self._pending_strategy_state = None
        return self.strategy

    def step_entropy_coef(self) -> float:
        """The entropy-bonus coefficient of this step: ``entropy_control.entropy_coef`` (or,
        with ``adaptive_entropy``, the adaptive coefficient it starts) plus the strategy's own
        (``target`` with ``actuator: cascade | bonus``)."""
        if self.adaptive_entropy is not None:
            return self._adaptive_coef + self._bonus
        return float(self.entropy_control.entropy_coef) + self._bonus

    def _step_weights(self, mode: str) -> tuple[float, float]:
        """(w_up, w_low) for the current optimizer step; the strategy is asked once per step."""
        step = int(self.state.global_step)
        if mode == "train" and step != self._weights_step:
            strategy = self._ensure_strategy()
            w_up, w_low = strategy.weights(step, entropy=self.rollout_entropy)
            self._weights, self._weights_step = (float(w_up), float(w_low)), step
            self._bonus = float(strategy.bonus_coef())
            metrics = strategy.metrics()
            if self.adaptive_entropy is not None:
                if self.rollout_entropy is None:
                    raise ValueError("adaptive_entropy needs the rollout entropy of the step")
                self._adaptive_coef = self.adaptive_entropy.step(self.rollout_entropy)
                metrics.update(self.adaptive_entropy.metrics())
            for key, value in metrics.items():
                self._metrics[mode][key].append(float(value))
        return self._weights

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
        old = out.get("old_per_token_logps")
        if capture and old is not None and capture[0][0] is old:
            entropies = capture[0][1]
        else:
            entropies = self._rollout_entropies(out)
        mask = self._loss_mask(out)
        totals = torch.stack([(entropies * mask).sum(), mask.sum().float()])
        totals = self.accelerator.reduce(totals, reduction="sum")
        if self.model is not None and self.model.training:
            self.rollout_entropy = float((totals[0] / totals[1].clamp(min=1.0)).item())
        out["flexent_old_entropy"] = entropies
        if self.entropy_control.log_pred_dh_full:
            out["flexent_old_second_term"] = self._rollout_second_term(out)
        return out

    @torch.no_grad()
    def _rollout_second_term(self, out: dict[str, Any]) -> torch.Tensor:
        """pi_old's ``sum_x p_x^2 (ln p_x + H)`` per completion token (the distribution-wide part
        of the first-order entropy change): one no-grad forward with the full logits, divided by
        the sampling temperature as TRL's log-probs are."""
        from flexent.diagnostics import entropy_second_term

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
    def _loss_params(self, entropies: torch.Tensor) -> dict[str, Any]:
        """``loss_params`` plus what the loss's traits ask the adapter for: a generator, the
        current policy's per-token ``entropies`` (detached)."""
        from flexent.losses import loss_traits

        params = dict(self.entropy_control.loss_params)
        traits = loss_traits(self.entropy_control.loss)
        if traits.needs_generator:
            params["generator"] = self._step_generator()
        if traits.needs_entropy:
            params["entropy"] = entropies.detach()
        return params

    def _step_generator(self) -> torch.Generator:
        """This process's generator for randomised losses, re-seeded from (``args.seed``, rank,
        step) when the optimizer step changes: a resumed run draws what the uninterrupted one
        drew (:func:`flexent.control.step_seed`)."""
        from flexent.control import step_seed

        step = int(self.state.global_step)
        if self._generator is None or self._generator[0] != step:
            seed = step_seed(int(self.args.seed), int(self.accelerator.process_index), step)
            device = self.accelerator.device
            self._generator = (step, torch.Generator(device=device).manual_seed(seed))
        return self._generator[1]

    def _compute_loss(self, model, inputs):  # type: ignore[override]
        from flexent.integrations.trl.loss import compute_flexent_loss

        return compute_flexent_loss(self, model, inputs)

    # -- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):  # type: ignore[override]
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        path = os.path.join(self._get_output_dir(trial=trial), folder, STATE_FILE)
        with open(path, "w") as f:
            json.dump(self.flexent_state_dict(), f, indent=1)

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
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path}: missing; this checkpoint was not written by FlexentGRPOTrainer, so the "
                "entropy-control strategy state cannot be restored"
            )
        with open(path) as f:
            self.load_flexent_state_dict(json.load(f))

    def flexent_state_dict(self) -> dict[str, Any]:
        strategy = self._ensure_strategy()
        return {
            "strategy": strategy.state_dict(),
            "rollout_entropy": self.rollout_entropy,
            "weights": list(self._weights),
            "weights_step": self._weights_step,
            "bonus": self._bonus,
            "adaptive_entropy": None
            if self.adaptive_entropy is None
            else {**self.adaptive_entropy.state_dict(), "applied": self._adaptive_coef},
        }

    def load_flexent_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending_strategy_state = dict(state["strategy"])
        if self.strategy is not None:
            self._ensure_strategy()
        self.rollout_entropy = state["rollout_entropy"]
        self._weights = (float(state["weights"][0]), float(state["weights"][1]))
        self._weights_step = int(state["weights_step"])
        self._bonus = float(state.get("bonus", 0.0))
        adaptive = state.get("adaptive_entropy")
        if self.adaptive_entropy is not None:
            if adaptive is None:
                raise ValueError("the checkpoint has no adaptive entropy state to resume")
            self.adaptive_entropy.load_state_dict(adaptive)
            self._adaptive_coef = float(adaptive["applied"])

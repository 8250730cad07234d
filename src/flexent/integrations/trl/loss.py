"""The loss step of ``FlexentGRPOTrainer``: TRL 1.16's ``_compute_loss`` with the flexent loss.

The structure follows ``trl.GRPOTrainer._compute_loss`` line by line (masks, KL with its bias
correction, vLLM importance-sampling correction, the per-``loss_type`` normalisation and its
gradient-accumulation scaling), so that with ``static`` weights and fixed eps the result equals
TRL's native ``loss_type="dapo"`` loss (``tests/test_trl_adapter.py`` checks this).
"""

from __future__ import annotations

from typing import Any

import torch

from flexent.control import step_eps
from flexent.integrations.trl.metrics import StepTensors, log_step_metrics
from flexent.losses import aggregate, entropy_bonus


def _normalise(trainer: Any, per_token_loss: torch.Tensor, mask: torch.Tensor, inputs, mode: str):
    """TRL's normalisation for ``trainer.loss_type`` (with ``losses.aggregate``, which owns
    every reduction) and its gradient-accumulation scaling -> (loss to backprop, policy loss
    to log)."""
    loss_type = trainer.loss_type
    accum = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
    n_seqs = per_token_loss.size(0)  # TRL averages over every sequence, empty ones included
    if loss_type == "dapo":
        # num_items_in_batch counts the whole generation batch; rescale to one accumulation window
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
        if mode == "train":
            normalizer = normalizer * accum / trainer.args.steps_per_generation
        loss = aggregate(per_token_loss, mask, "token-mean", num_tokens=normalizer)
        return loss, loss.detach()
    if loss_type == "bnpo":
        loss = aggregate(per_token_loss, mask, "token-mean")
    elif loss_type == "dr_grpo":
        loss = aggregate(per_token_loss, mask, "seq-mean-token-sum-norm", num_seqs=n_seqs,
                         norm_const=float(trainer.max_completion_length))  # fmt: skip
    elif loss_type in ("grpo", "luspo"):
        mode_of = {"grpo": "seq-mean-token-mean", "luspo": "seq-mean-token-sum"}
        loss = aggregate(per_token_loss, mask, mode_of[loss_type], num_seqs=n_seqs)
    else:
        raise ValueError(f"unsupported trainer.loss_type {loss_type!r}")
    return loss / accum, loss.detach()


def _forward(trainer: Any, model, inputs):
    prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
    completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
    extra = {
        k: inputs.get(k)
        for k in (
            "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask",
            "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids",
            "mm_token_type_ids", "image_position_ids",
        )
    }  # fmt: skip
    return trainer._get_per_token_logps_and_entropies(
        model,
        torch.cat([prompt_ids, completion_ids], dim=1),
        torch.cat([prompt_mask, completion_mask], dim=1),
        completion_ids.size(1),
        compute_entropy=True,
        compute_aux_loss=trainer.aux_loss_enabled,
        **extra,
    )


def compute_flexent_loss(trainer: Any, model, inputs) -> torch.Tensor:
    """The loss to backpropagate for one micro-batch; logs the step's diagnostics."""
    mode = "train" if trainer.model.training else "eval"
    mask = trainer._loss_mask(inputs)
    logprobs, entropies, aux_loss = _forward(trainer, model, inputs)
    advantages = inputs["advantages"]
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    old_logprobs = inputs.get("old_per_token_logps")
    old_logprobs = logprobs.detach() if old_logprobs is None else old_logprobs

    control = trainer.step_control(mode)
    w_up, w_low = control.weights
    eps_low, eps_high = step_eps(trainer.entropy_control.thresholds, old_logprobs,
                                 w_up=w_up, w_low=w_low, logprobs=logprobs)  # fmt: skip
    # the loss-weight controllers (EntroPIC, AEPO, REPO-R) act through the advantages
    adv_bt = control.shape_advantages(advantages.expand_as(logprobs), logprobs=logprobs)
    out = trainer._loss_fn(
        logprobs, old_logprobs, adv_bt, mask, eps_low=eps_low, eps_high=eps_high,
        **trainer.loss_arguments(entropies, inputs),
    )  # fmt: skip
    per_token_loss = out.per_token_loss
    coef = control.entropy_coef
    if coef:
        per_token_loss = entropy_bonus(per_token_loss, entropies, coef)
    per_token_loss, per_token_kl = _trl_terms(
        trainer, per_token_loss, inputs, logprobs, old_logprobs, advantages, entropies, mask
    )
    loss, policy_loss = _normalise(trainer, per_token_loss, mask, inputs, mode)
    if trainer.aux_loss_enabled:
        accum = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss + trainer.router_aux_loss_coef * aux_loss / accum

    log_step_metrics(
        trainer,
        mode,
        StepTensors(
            mask=mask, logprobs=logprobs.detach(), old_logprobs=old_logprobs, advantages=adv_bt,
            entropies=entropies.detach(), old_entropies=inputs.get("flexent_old_entropy"),
            old_second_term=inputs.get("flexent_old_second_term"),
            eps_low=eps_low, eps_high=eps_high,
        ),
        loss_metrics=out.metrics,
        per_token_kl=per_token_kl,
        policy_loss=policy_loss,
    )  # fmt: skip
    return loss


def _trl_terms(
    trainer: Any, per_token_loss, inputs, logprobs, old_logprobs, advantages, entropies, mask
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """TRL's token masks and corrections on the flexent per-token loss, in TRL's order:
    off-policy sequence mask, top-entropy mask, vLLM importance sampling, KL term. Returns the
    loss and the per-token KL (None when ``beta`` is 0)."""
    if trainer.off_policy_mask_threshold is not None:
        sampling = inputs.get("sampling_per_token_logps", old_logprobs)
        per_token_loss = per_token_loss * trainer.get_off_policy_mask(
            advantages=advantages,
            per_token_logps=logprobs,
            sampling_per_token_logps=sampling,
            mask=mask,
            off_policy_threshold=trainer.off_policy_mask_threshold,
        )
    if trainer.top_entropy_quantile < 1.0:
        per_token_loss = per_token_loss * trainer.get_high_entropy_mask(
            entropies, mask, 1 - trainer.top_entropy_quantile
        )
    if trainer.use_vllm and trainer.vllm_importance_sampling_correction:
        per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
    if trainer.beta == 0.0:
        return per_token_loss, None
    ref = inputs["ref_per_token_logps"]
    per_token_kl = torch.exp(ref - logprobs) - (ref - logprobs) - 1
    if trainer.args.use_bias_correction_kl:
        per_token_kl = per_token_kl * torch.exp(logprobs - old_logprobs)
    return per_token_loss + trainer.beta * per_token_kl, per_token_kl

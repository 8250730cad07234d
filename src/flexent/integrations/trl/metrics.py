"""Diagnostics of ``FlexentGRPOTrainer`` written into TRL's ``self._metrics`` (one value per
micro-batch; TRL averages them per logging step and sends them to every ``report_to`` backend).

Every value is reduced over processes the way TRL does (sum of value * tokens and of tokens,
then divide), so multi-GPU runs log the global token mean, not rank 0's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from flexent.diagnostics import region_stats
from flexent.masked import masked_mean


def _global_mean(trainer: Any, values: dict[str, torch.Tensor], weight: torch.Tensor) -> dict:
    """Token-weighted mean over processes of local means ``values`` (0-dim) with ``weight`` tokens."""
    if not values:
        return {}
    keys = sorted(values)
    local = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    local = torch.nan_to_num(local, nan=0.0) * weight
    totals = trainer.accelerator.reduce(torch.cat([local, weight.reshape(1)]), reduction="sum")
    denom = totals[-1].clamp(min=1.0)
    return dict(zip(keys, (totals[:-1] / denom).tolist(), strict=True))


@dataclass
class StepTensors:
    """One micro-batch's tensors, ``[B, T]`` each (eps: tensors or floats)."""

    mask: torch.Tensor
    logprobs: torch.Tensor  # detached
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    entropies: torch.Tensor  # current policy's token entropy, detached
    old_entropies: torch.Tensor | None  # pi_old's (the rollout's), when measured
    old_second_term: torch.Tensor | None  # pi_old's sum_x p^2 (ln p + H), when logged
    eps_low: torch.Tensor | float
    eps_high: torch.Tensor | float


def log_step_metrics(
    trainer: Any,
    mode: str,
    t: StepTensors,
    *,
    loss_metrics: dict[str, torch.Tensor],
    per_token_kl: torch.Tensor | None,
    policy_loss: torch.Tensor,
) -> None:
    """Append this micro-batch's metrics (global token means) to ``trainer._metrics[mode]``."""
    entropy_mean = masked_mean(t.entropies.float(), t.mask)
    local: dict[str, torch.Tensor] = {
        **loss_metrics,
        "entropy/mean": entropy_mean,
        "policy/loss": policy_loss,
        # TRL's own key names, kept so that TRL dashboards keep working
        "entropy": entropy_mean,
        "clip_ratio/low_mean": loss_metrics["clip/frac_low"],
        "clip_ratio/high_mean": loss_metrics["clip/frac_high"],
    }
    if per_token_kl is not None:
        local["kl"] = masked_mean(per_token_kl.detach().float(), t.mask)
    schemes = trainer.entropy_control.region_schemes
    if schemes:
        local.update(
            region_stats(
                t.logprobs, t.old_logprobs, t.advantages, t.mask,
                entropy=t.old_entropies if t.old_entropies is not None else t.entropies,
                eps_low=t.eps_low, eps_high=t.eps_high, schemes=schemes,
                second_term=t.old_second_term if t.old_entropies is not None else None,
            )
        )  # fmt: skip
    for key, value in _global_mean(trainer, local, t.mask.float().sum()).items():
        trainer._metrics[mode][key].append(value)
    if mode == "train" and trainer.rollout_entropy is not None:
        trainer._metrics[mode]["entropy/rollout"].append(trainer.rollout_entropy)

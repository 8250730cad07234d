"""Diagnostics of ``FlexentGRPOTrainer`` written into TRL's ``self._metrics`` (one value per
micro-batch; TRL averages them per logging step and sends them to every ``report_to`` backend).

Every value is reduced over processes the way TRL does (sum of value * tokens and of tokens,
then divide), so multi-GPU runs log the global token mean, not rank 0's.
"""

from __future__ import annotations

from typing import Any

import torch


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


def log_step_metrics(
    trainer: Any,
    mode: str,
    *,
    mask: torch.Tensor,
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    entropies: torch.Tensor,
    old_entropies: torch.Tensor | None,
    eps_low: torch.Tensor,
    eps_high: torch.Tensor,
    loss_metrics: dict[str, torch.Tensor],
    per_token_kl: torch.Tensor | None,
    policy_loss: torch.Tensor,
) -> None:
    from flexent.diagnostics import masked_mean, region_stats

    maskf = mask.float()
    ratio = torch.exp(logprobs - old_logprobs)
    entropy_mean = masked_mean(entropies.float(), maskf)
    local: dict[str, torch.Tensor] = {
        "entropy/mean": entropy_mean,
        "policy/loss": policy_loss,
        # TRL's own key names, kept so that TRL dashboards keep working
        "entropy": entropy_mean,
        "clip_ratio/low_mean": masked_mean(
            ((ratio < 1 - eps_low) & (advantages < 0)).float(), maskf
        ),
        "clip_ratio/high_mean": masked_mean(
            ((ratio > 1 + eps_high) & (advantages > 0)).float(), maskf
        ),
    }
    local.update(loss_metrics)
    if per_token_kl is not None:
        local["kl"] = masked_mean(per_token_kl.detach().float(), maskf)
    region_entropy = old_entropies if old_entropies is not None else entropies
    for scheme in trainer.entropy_control.region_schemes:
        local.update(
            region_stats(
                logprobs,
                old_logprobs,
                advantages,
                mask,
                entropy=region_entropy,
                eps_low=eps_low,
                eps_high=eps_high,
                scheme=scheme,
            )
        )
    for key, value in _global_mean(trainer, local, maskf.sum()).items():
        trainer._metrics[mode][key].append(value)
    if mode == "train" and trainer.rollout_entropy is not None:
        trainer._metrics[mode]["entropy/rollout"].append(trainer.rollout_entropy)

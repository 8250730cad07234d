"""GSPO: the clipped surrogate on a sequence-level ratio (Zheng et al. 2025, arXiv 2507.18071)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from flexent.losses._common import (
    EpsLike,
    base_metrics,
    prepare,
)
from flexent.losses.clip import clipped_surrogate
from flexent.losses.registry import LossOutput, register_policy_loss


@register_policy_loss("gspo", sequence_level=True, default_agg="seq-mean-token-mean")
def gspo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 3e-4,
    eps_high: EpsLike = 4e-4,
) -> LossOutput:
    """GSPO-token: ``s_i = exp(mean_t log r_it)`` over the valid tokens of sequence i, used per token as
    ``s_it = sg(s_i) * pi_theta / sg(pi_theta)`` (same value as ``s_i``; gradient of each token
    is ``s_i`` times its own log-prob gradient), then the PPO clip with GSPO's tiny bounds.

    Equals sequence-level GSPO with ``seq-mean-token-mean`` aggregation (the paper's); other
    aggregation modes weight sequences by length. ``clip/frac_*`` are token-weighted fractions
    of clipped sequences; ``policy/ratio_mean`` is the token ratio; ``gspo/seq_ratio_mean`` is the
    mean over valid tokens of ``s_i``.
    """
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    n = p.mask.sum(-1, keepdim=True).clamp(min=1).to(p.log_ratio.dtype)
    # Token log-ratios are clamped already, so |log s_i| <= LOG_RATIO_CLAMP and exp is finite.
    seq_log_ratio = (p.log_ratio.sum(-1, keepdim=True) / n).detach()
    lp = p.masked_logprobs()
    log_s = seq_log_ratio + (lp - lp.detach())
    log_s = torch.where(p.mask, log_s, torch.zeros_like(log_s))
    seq = dataclasses.replace(p, log_ratio=log_s, ratio=log_s.exp())
    loss, high, low = clipped_surrogate(seq)
    metrics = base_metrics(p, high, low)
    metrics["gspo/seq_ratio_mean"] = base_metrics(seq, high, low)["policy/ratio_mean"]
    return LossOutput(loss, metrics)

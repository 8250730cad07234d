"""GSPO: the clipped surrogate on a sequence-level ratio (Zheng et al. 2025, arXiv 2507.18071),
and LUSPO, GSPO with length-scaled (token-sum) aggregation (arXiv 2602.05261)."""

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


@register_policy_loss("luspo", sequence_level=True, default_agg="seq-mean-token-sum")
def luspo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 2e-3,
    eps_high: EpsLike = 2.5e-3,
) -> LossOutput:
    """LUSPO (Liu et al. 2026, arXiv 2602.05261): GSPO scaled by each response's length.

    The per-token loss is :func:`gspo`'s (the sequence ratio ``s_i = exp(mean_t log r_it)``
    clipped with the PPO clip); the rule is its aggregation, declared as the loss's
    ``default_agg``: ``seq-mean-token-sum``, so sequence i weighs ``|y_i| * (GSPO loss of i)``
    and long responses are no longer under-weighted. This is TRL 1.16's ``loss_type="luspo"``
    with ``importance_sampling_level="sequence"`` (``trl/trainer/grpo_trainer.py``,
    ``_compute_loss``: ``(per_token_loss * mask).sum(-1).mean()``, the mean over every sequence
    of the micro-batch: ``aggregate(..., "seq-mean-token-sum", num_seqs=B)``). With
    sequence-level advantages ``[B]`` the value and gradient equal TRL's, whose ratio carries
    the gradient ``s_i / |y_i|`` to each token (tested); with per-token advantages the
    GSPO-token form gives each token its own ``-A_it s_i`` instead.

    Defaults 2e-3 / 2.5e-3 are the paper's (§5.1, as TRL's paper index quotes them; TRL's own
    ``epsilon`` default is 0.2). Departure from TRL: token log-ratios are clamped to [-20, 20]
    before the mean (flexent's ``prepare``), TRL does not clamp (tests/test_trl_parity_losses.py).
    Metrics: :func:`gspo`'s.
    """
    return gspo(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)

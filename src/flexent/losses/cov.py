"""Covariance-based entropy control: Clip-Cov and KL-Cov (Cui et al. 2025, arXiv 2505.22617).

Both score each valid token by the centred covariance between its advantage and its current
log-prob, ``cov = (A - mean A) (logp - mean logp)`` (means over valid tokens), and treat the
few tokens with the largest covariance specially: Clip-Cov removes the gradient of a random
sample of them, KL-Cov adds a ``|log r|`` penalty to the top ones. Selection is done by ranks
over the whole batch without reading any value back to the host (no ``.item()``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import (
    EpsLike,
    Prepared,
    base_metrics,
    out_of_band,
    prepare,
)
from flexent.losses.clip import clipped_surrogate
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a float in (0, 1], got {value!r}")


def token_cov(p: Prepared) -> Tensor:
    """Centred covariance term per token ``[B, T]`` (detached; 0 on masked tokens)."""
    lp = p.masked_logprobs().detach()
    a = p.advantages
    zero = torch.zeros((), dtype=lp.dtype, device=lp.device)
    a_c = torch.where(p.mask, a - masked_mean(a, p.mask), zero)
    lp_c = torch.where(p.mask, lp - masked_mean(lp, p.mask), zero)
    return a_c * lp_c


def top_by_rank(keys: Tensor, eligible: Tensor, fraction: float, n_valid: Tensor) -> Tensor:
    """Bool ``[B, T]``: the ``max(1, floor(fraction * n_valid))`` eligible tokens with the largest
    ``keys`` (fewer if fewer are eligible). Ties go to the earlier position (stable sort)."""
    flat = torch.where(eligible, keys, torch.full_like(keys, -math.inf)).flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    k = (n_valid.to(torch.float64) * fraction).floor().clamp(min=1)
    return eligible & (rank.view_as(keys) < k)


@register_policy_loss("clip_cov", needs_generator=True)
def clip_cov(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """Clip-Cov: the PPO clip, plus the gradient of a random ``clip_cov_ratio`` of all valid tokens
    removed, drawn among tokens not already clipped whose cov lies in ``(lb, ub)``.

    The selected tokens keep their loss value (``sg``), only their gradient goes; verl's version
    multiplies their loss by 0 instead (same gradient, different logged loss). ``generator`` (an
    explicit ``torch.Generator``) is required: the draw is ``torch.rand`` on its device. Metric:
    ``clip_cov/frac_detached`` besides the common keys.
    """
    _check_fraction("clip_cov_ratio", clip_cov_ratio)
    if not clip_cov_lb < clip_cov_ub:
        raise ValueError(f"need clip_cov_lb < clip_cov_ub, got {clip_cov_lb!r}, {clip_cov_ub!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"clip_cov needs generator=torch.Generator(...), got {generator!r}")
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    loss, high, low = clipped_surrogate(p)
    cov = token_cov(p)
    eligible = p.mask & ~(high | low) & (cov > clip_cov_lb) & (cov < clip_cov_ub)
    keys = torch.rand(cov.shape, generator=generator, device=generator.device).to(cov)
    chosen = top_by_rank(keys, eligible, clip_cov_ratio, p.mask.sum())
    loss = torch.where(chosen, loss.detach(), loss)
    metrics = base_metrics(p, high, low)
    metrics["clip_cov/frac_detached"] = masked_mean(chosen.to(loss.dtype), p.mask)
    return LossOutput(loss, metrics)


@register_policy_loss("kl_cov")
def kl_cov(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    kl_cov_ratio: float = 2e-4,
    kl_coef: float = 1.0,
) -> LossOutput:
    """KL-Cov: no clip; loss ``-A r``, plus ``kl_coef |log r|`` on the top ``kl_cov_ratio`` of
    valid tokens by cov (at least one token). ``eps_low``/``eps_high`` only feed the
    ``clip/frac_*`` metrics (tokens outside the band, nothing is clipped). Metric:
    ``kl_cov/frac_penalised`` besides the common keys. Use ``kl_cov_ratio=2e-3`` for 7B models.
    """
    _check_fraction("kl_cov_ratio", kl_cov_ratio)
    if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or not kl_coef >= 0:
        raise ValueError(f"kl_coef must be a float >= 0, got {kl_coef!r}")
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    chosen = top_by_rank(token_cov(p), p.mask, kl_cov_ratio, p.mask.sum())
    penalty = torch.where(chosen, kl_coef * p.log_ratio.abs(), torch.zeros_like(p.log_ratio))
    loss = -p.advantages * p.ratio + penalty
    high, low = out_of_band(p, p.ratio)
    metrics = base_metrics(p, high, low)
    metrics["kl_cov/frac_penalised"] = masked_mean(chosen.to(loss.dtype), p.mask)
    return LossOutput(loss, metrics)

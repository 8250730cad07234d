"""Shared input handling and metrics for the policy losses (internal).

Masked tokens are neutralised with ``torch.where`` *before* any arithmetic (log-ratio 0,
advantage 0), so padding that holds ``-inf``/NaN log-probs can never leak NaN into the loss or
its gradient: ``where`` hands an exact zero gradient to the branch it does not select.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# |log r| above this is clamped before exp: r stays in [2e-9, 4.9e8] and exp never overflows.
LOG_RATIO_CLAMP = 20.0

EpsLike = float | Tensor


@dataclass
class Prepared:
    """Validated, masked inputs. Every tensor is ``[B, T]`` in float32 or wider."""

    logprobs: Tensor  # masked positions set to 0, gradient flows on valid tokens
    log_ratio: Tensor  # clamp(logprobs - old_logprobs), 0 on masked tokens
    ratio: Tensor  # exp(log_ratio)
    advantages: Tensor  # broadcast to [B, T], 0 on masked tokens
    mask: Tensor  # bool
    eps_low: EpsLike  # float, or a detached tensor broadcastable to [B, T]
    eps_high: EpsLike


def _check_eps(name: str, eps: EpsLike, shape: torch.Size, *, upper: bool) -> EpsLike:
    if isinstance(eps, Tensor):
        try:
            out_shape = torch.broadcast_shapes(eps.shape, shape)
        except RuntimeError:
            out_shape = None
        if out_shape != shape:
            raise ValueError(
                f"{name} of shape {tuple(eps.shape)} does not broadcast to {tuple(shape)}"
            )
        return eps.detach()
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
        raise ValueError(f"{name} must be a finite float or a tensor, got {eps!r}")
    if eps < 0.0 or (not upper and eps >= 1.0):
        bound = "[0, inf)" if upper else "[0, 1)"
        raise ValueError(f"{name} must lie in {bound}, got {eps!r}")
    return float(eps)


def prepare(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike,
    eps_high: EpsLike,
) -> Prepared:
    """Check shapes and build the masked, clamped quantities every loss starts from."""
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got shape {tuple(logprobs.shape)}")
    shape = logprobs.shape
    for name, t in (("old_logprobs", old_logprobs), ("mask", mask)):
        if t.shape != shape:
            raise ValueError(f"{name} shape {tuple(t.shape)} != logprobs shape {tuple(shape)}")
    if advantages.shape == shape[:1]:
        advantages = advantages.unsqueeze(-1)
    elif advantages.shape != shape:
        raise ValueError(
            f"advantages must be [B] or [B, T] = {tuple(shape)}, got {tuple(advantages.shape)}"
        )
    dtype = torch.promote_types(logprobs.dtype, torch.float32)
    valid = mask if mask.dtype == torch.bool else mask != 0
    zero = logprobs.new_zeros((), dtype=dtype)
    logprobs = torch.where(valid, logprobs.to(dtype), zero)
    log_ratio = torch.where(valid, logprobs - old_logprobs.detach().to(dtype), zero)
    log_ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return Prepared(
        logprobs=logprobs,
        log_ratio=log_ratio,
        ratio=log_ratio.exp(),
        advantages=torch.where(valid, advantages.detach().to(dtype), zero),
        mask=valid,
        eps_low=_check_eps("eps_low", eps_low, shape, upper=False),
        eps_high=_check_eps("eps_high", eps_high, shape, upper=True),
    )


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (bool, ``[B, T]``); 0 when nothing is valid. 0-dim, detached."""
    x = x.detach()
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum()
    return total / mask.sum().clamp(min=1).to(total.dtype)


def out_of_band(p: Prepared, ratio: Tensor) -> tuple[Tensor, Tensor]:
    """``(high, low)`` bool ``[B, T]``: tokens whose clipped surrogate is flat in the ratio.

    high: A > 0 and r > 1 + eps_high;  low: A < 0 and r < 1 - eps_low (masked tokens: False).
    """
    high = (p.advantages > 0) & (ratio > 1.0 + p.eps_high)
    low = (p.advantages < 0) & (ratio < 1.0 - p.eps_low)
    return high, low


def base_metrics(p: Prepared, high: Tensor, low: Tensor) -> dict[str, Tensor]:
    """The metric keys every loss returns (means over valid tokens)."""
    m = p.mask
    lr = p.log_ratio.detach()
    ratio = p.ratio.detach()
    eps_low = torch.as_tensor(p.eps_low, dtype=ratio.dtype, device=ratio.device)
    eps_high = torch.as_tensor(p.eps_high, dtype=ratio.dtype, device=ratio.device)
    return {
        "clip/frac_high": masked_mean(high.to(ratio.dtype), m),
        "clip/frac_low": masked_mean(low.to(ratio.dtype), m),
        "clip/frac": masked_mean((high | low).to(ratio.dtype), m),
        "clip/eps_high_mean": masked_mean(eps_high.expand_as(ratio), m),
        "clip/eps_low_mean": masked_mean(eps_low.expand_as(ratio), m),
        "policy/ratio_mean": masked_mean(ratio, m),
        # k3 estimator of KL(pi_old || pi_theta) on samples from pi_old: (r - 1) - log r >= 0.
        "policy/approx_kl": masked_mean(ratio - 1.0 - lr, m),
        # k1 estimator, mean of -log r: verl's `actor/ppo_kl`.
        "policy/kl_k1": masked_mean(-lr, m),
    }


def finish(p: Prepared, per_token_loss: Tensor) -> Tensor:
    """Zero the loss on masked tokens (value and gradient)."""
    return torch.where(p.mask, per_token_loss, torch.zeros_like(per_token_loss))

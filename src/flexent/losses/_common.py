"""Shared input handling and metrics for the policy losses (internal).

Masked tokens are neutralised with ``torch.where`` *before* any arithmetic (log-ratio 0, so
ratio 1, and advantage 0), so padding that holds ``-inf``/NaN log-probs can never leak NaN into
the loss or its gradient: ``where`` hands an exact zero gradient to the branch it does not
select. Every loss is a multiple of the advantage (or, for KL-Cov's penalty, restricted to
valid tokens), so its value and gradient on masked tokens are exactly 0 without a further
masking pass (``where`` is slow on CPU; the tests check the invariant with NaN/inf padding).
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

    logprobs: Tensor  # as given (masked positions may hold anything): use masked_logprobs()
    log_ratio: Tensor  # clamp(logprobs - old_logprobs), 0 on masked tokens
    ratio: Tensor  # exp(log_ratio)
    advantages: Tensor  # broadcast to [B, T], 0 on masked tokens
    mask: Tensor  # bool
    eps_low: EpsLike  # float, or a detached tensor broadcastable to [B, T]
    eps_high: EpsLike
    lo: EpsLike  # 1 - eps_low, computed once (a Python float when eps_low is one)
    hi: EpsLike  # 1 + eps_high

    def masked_logprobs(self) -> Tensor:
        """``logprobs`` with masked positions set to 0 (gradient 0 there)."""
        return torch.where(self.mask, self.logprobs, torch.zeros_like(self.logprobs))


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


def check_inputs(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike,
    eps_high: EpsLike,
) -> tuple[Tensor, Tensor, Tensor, Tensor, EpsLike, EpsLike]:
    """Check shapes and eps. Returns ``(logprobs, old_logprobs, advantages, valid, eps_low,
    eps_high)``: log-probs in the compute dtype (float32 or wider; ``old_logprobs`` detached),
    advantages ``[B, 1]`` or ``[B, T]`` (detached), ``valid`` the bool mask."""
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
    eps_low = _check_eps("eps_low", eps_low, shape, upper=False)
    eps_high = _check_eps("eps_high", eps_high, shape, upper=True)
    old = old_logprobs.detach().to(dtype)
    return logprobs.to(dtype), old, advantages.detach().to(dtype), valid, eps_low, eps_high


def prepare(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike,
    eps_high: EpsLike,
) -> Prepared:
    """Check inputs and build the masked, clamped quantities every loss starts from."""
    logprobs, old, adv, valid, eps_low, eps_high = check_inputs(
        logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high
    )
    zero = logprobs.new_zeros(())
    log_ratio = torch.where(valid, logprobs - old, zero)
    log_ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return Prepared(
        logprobs=logprobs,
        log_ratio=log_ratio,
        ratio=log_ratio.exp(),
        advantages=torch.where(valid, adv, zero),
        mask=valid,
        eps_low=eps_low,
        eps_high=eps_high,
        lo=1.0 - eps_low,
        hi=1.0 + eps_high,
    )


def out_of_band(p: Prepared, ratio: Tensor) -> tuple[Tensor, Tensor]:
    """``(high, low)`` bool ``[B, T]``: tokens whose clipped surrogate is flat in the ratio.

    high: A > 0 and r > 1 + eps_high;  low: A < 0 and r < 1 - eps_low (masked tokens: False).
    """
    high = (p.advantages > 0) & (ratio > p.hi)
    low = (p.advantages < 0) & (ratio < p.lo)
    return high, low


def base_metrics(p: Prepared, high: Tensor, low: Tensor) -> dict[str, Tensor]:
    """The metric keys every loss returns (means over valid tokens, 0 when there are none).

    Written without ``where``/masking passes (slow on CPU): ``prepare`` guarantees that masked
    tokens have log-ratio 0, ratio 1 and advantage 0, so ``high``/``low`` are False there and
    ``r - 1``, ``r - 1 - log r`` and ``log r`` are exactly 0 there.
    """
    n = p.mask.sum()
    denom = n.clamp(min=1).to(p.ratio.dtype)
    return {
        "clip/frac_high": high.sum() / denom,
        "clip/frac_low": low.sum() / denom,
        "clip/frac": (high | low).sum() / denom,
        "clip/eps_high_mean": eps_mean(p.eps_high, p.mask, n, denom),
        "clip/eps_low_mean": eps_mean(p.eps_low, p.mask, n, denom),
        **policy_metrics(p.ratio, p.log_ratio, n, denom),
    }


def policy_metrics(ratio: Tensor, log_ratio: Tensor, n: Tensor, denom: Tensor) -> dict[str, Tensor]:
    """Mean ratio and KL estimates over the ``n`` valid tokens (masked: ratio 1, log-ratio 0)."""
    ratio, lr = ratio.detach(), log_ratio.detach()
    r_minus_1 = ratio - 1.0
    ratio_sum = r_minus_1.sum()
    return {
        "policy/ratio_mean": (ratio_sum + n) / denom,
        # k3 estimator of KL(pi_old || pi_theta) on samples from pi_old: (r - 1) - log r >= 0.
        # In place: the value of (ratio - 1.0 - lr) without another [B, T] buffer.
        "policy/approx_kl": r_minus_1.sub_(lr).sum() / denom,
        # k1 estimator, mean of -log r: verl's `actor/ppo_kl`.
        "policy/kl_k1": -lr.sum() / denom,
    }


def eps_mean(
    eps: EpsLike, mask: Tensor, n: Tensor, denom: Tensor, out: Tensor | None = None
) -> Tensor:
    """Mean of ``eps`` over the valid tokens. ``mask``: bool, or float {0, 1} (faster on CPU);
    ``out``: an optional ``[B, T]`` scratch buffer for the product."""
    if isinstance(eps, Tensor):
        # nansum: eps may be NaN/inf in padding (thresholds of garbage log-probs); x * 0 -> NaN.
        return (
            torch.nansum(torch.mul(eps, mask, out=out) if out is not None else eps * mask) / denom
        )
    # A scalar eps: its mean over the valid tokens is itself (0 when there are none).
    return ((n > 0) * eps).to(denom.dtype)

"""Token-level clipped surrogates: PPO/GRPO clip (with DAPO clip-higher, clip-lower, dual clip
and the dynamic per-token thresholds) and CE-GPPO (docs/method.md §1, §3, §5)."""

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
from flexent.losses._fused import fusable, fused_ppo_clip
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean


@register_policy_loss("ppo_clip")
def ppo_clip(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    clip_c: float | None = None,
) -> LossOutput:
    """PPO clipped surrogate (GRPO, DAPO clip-higher, clip-lower, dual clip), per token:

        r    = exp(logprobs - old_logprobs)
        loss = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))
        loss = -A clip_c  where A < 0 and r > clip_c          (dual clip, when clip_c is set)

    ``eps_low``/``eps_high`` may be per-token tensors (the dynamic thresholds). A token
    with A > 0 and r > 1 + eps_high, or A < 0 and r < 1 - eps_low, has the constant loss
    ``-A (1 ± eps)`` and no gradient; every other token has ``-A r``. ``clip_c`` (> 1) is the
    dual clip of Ye et al. 2019. Shapes: ``[B, T]`` (advantages ``[B]`` or ``[B, T]``). Metrics:
    the common clip and policy keys, plus ``clip/frac_dual`` when ``clip_c`` is set.

    This is :func:`ppo_clip_reference` (the readable autograd spec) computed in one graph-free
    pass (``_fused``): bit for bit the same loss, gradient (up to the sign of zeros) and metrics
    (tests/test_ppo_clip_spec.py) for finite log-probs on valid tokens and per-token eps that
    are >= 0, NaN or +inf (NaN and +inf never clip); negative eps tensors are not checked (a
    check would cost a pass and a host sync per call) and are outside that contract. The
    reference runs when the eps tensors' dtype differs from the compute dtype.

    >>> import torch
    >>> lp = torch.log(torch.tensor([[1.5, 1.0, 0.5]]))   # old log-probs 0, so r = 1.5, 1.0, 0.5
    >>> out = ppo_clip(lp, torch.zeros(1, 3), torch.tensor([1.0]), torch.ones(1, 3, dtype=torch.bool))
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]
    [-1.2, -1.0, -0.5]
    """
    _check_clip_c(clip_c)
    if not fusable(logprobs, eps_low, eps_high):
        return ppo_clip_reference(
            logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high,
            clip_c=clip_c,
        )  # fmt: skip
    f = fused_ppo_clip(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    return _dual_clip(f.loss, f.metrics, f.neg_adv, f.ratio, f.mask, clip_c)


def ppo_clip_reference(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    clip_c: float | None = None,
) -> LossOutput:
    """:func:`ppo_clip` written as the formula, under autograd: ``prepare`` (masking, clamped
    log-ratio), :func:`clipped_surrogate` and ``base_metrics``. The specification the fused
    default path is tested against; not registered."""
    _check_clip_c(clip_c)
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    loss, high, low = clipped_surrogate(p)
    return _dual_clip(loss, base_metrics(p, high, low), -p.advantages, p.ratio, p.mask, clip_c)


def _check_clip_c(clip_c: float | None) -> None:
    if clip_c is None:
        return
    if isinstance(clip_c, bool) or not isinstance(clip_c, (int, float)):
        raise ValueError(f"clip_c must be a float > 1 or None, got {clip_c!r}")
    if not (math.isfinite(clip_c) and clip_c > 1.0):
        raise ValueError(f"clip_c must be a finite float > 1 (dual clip), got {clip_c!r}")


def _dual_clip(
    loss: Tensor, metrics: dict[str, Tensor], neg_adv: Tensor, r: Tensor, valid: Tensor,
    clip_c: float | None,
) -> LossOutput:  # fmt: skip
    """Cap the loss of tokens with A < 0 and r > clip_c at ``-A clip_c`` (no gradient)."""
    if clip_c is not None:
        dual = (neg_adv > 0) & (r > clip_c)  # A < 0 and r > clip_c
        loss = torch.where(dual, neg_adv * float(clip_c), loss)
        metrics["clip/frac_dual"] = masked_mean(dual.to(r.dtype), valid)
    return LossOutput(loss, metrics)


def clipped_surrogate(p: Prepared) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, high, low)`` of the PPO clip on prepared inputs, all ``[B, T]``.

    A selection rather than TRL/verl's ``max(-A r, -A clamp(r, lo, hi))``: the same values
    (bit for bit, tested), no gradient split between tied branches, and faster forward+backward
    on CPU in our measurement.
    """
    A, r = p.advantages, p.ratio
    high, low = out_of_band(p, r)
    # With scalar eps the bound is built from the Python float (1.0 + 0.28 in double, rounded
    # once), exactly as torch.clamp(r, 1 - eps_low, 1 + eps_high) does in TRL and verl.
    bound = torch.where(high, _like(p.hi, r), _like(p.lo, r))
    return torch.where(high | low, -A * bound, -A * r), high, low


def _like(x: EpsLike, ref: Tensor) -> Tensor:
    """``x`` as a tensor with ``ref``'s dtype and device (a float becomes a 0-dim tensor)."""
    return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)


@register_policy_loss("ce_gppo")
def ce_gppo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    beta1: float = 0.75,
    beta2: float = 1.0,
) -> LossOutput:
    """CE-GPPO (Su et al. 2025, arXiv 2509.20712): clipping with a bounded out-of-band gradient.

    Per token, with ``sg`` the stop-gradient:

    - A < 0 and r < 1 - eps_low:  ``-beta1 (1 - eps_low) r / sg(r) A``
    - A > 0 and r > 1 + eps_high: ``-beta2 (1 + eps_high) r / sg(r) A``
    - otherwise:                   ``-r A``

    The out-of-band value is ``-beta (1 ± eps) A`` and its gradient with respect to the token's
    log-prob is the same constant, instead of PPO's zero. Metrics: the common keys, where
    ``clip/frac_*`` count the out-of-band tokens (their gradient is scaled, not removed).
    """
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
            raise ValueError(f"{name} must be a float >= 0, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    A, r = p.advantages, p.ratio
    high, low = out_of_band(p, r)
    # r / sg(r) == 1 in value, d/dlogprob == 1: carries the gradient without the ratio's size.
    unit = torch.exp(p.log_ratio - p.log_ratio.detach())
    coef = torch.where(
        high, _like(beta2 * (1.0 + p.eps_high), r), _like(beta1 * (1.0 - p.eps_low), r)
    )
    loss = torch.where(high | low, -coef * unit * A, -r * A)
    return LossOutput(loss, base_metrics(p, high, low))

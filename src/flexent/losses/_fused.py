"""``ppo_clip``'s forward and backward in one graph-free pass (internal).

The same values as ``prepare`` + ``clipped_surrogate`` + ``base_metrics`` under autograd (bit for
bit; the tests compare with TRL's formula and with straight-line references), computed for the
CPU's sake:

- no autograd graph: the backward is one precomputed multiply chain (``_SurrogateGrad``) instead
  of the ``where``/``exp``/``clamp`` backward nodes, which also saved more ``[B, T]`` tensors;
- float kernels only after the masking ``where``: kernels that write bool (``where``'s selection
  by a random mask, comparisons into bool, ``&``) are several times slower than float ones, so
  comparisons write float {0, 1} and selections are ``clamp``/``maximum``;
- few ``[B, T]`` buffers, reused in place: a fresh buffer costs a page fault per 4 KiB on CPU
  (glibc hands freed large blocks back to the kernel), more than the arithmetic on it.

Per-token eps tensors (the dynamic thresholds) take exactly the same path as scalar eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flexent.losses._common import (
    LOG_RATIO_CLAMP,
    EpsLike,
    check_inputs,
    eps_mean,
    policy_metrics,
)

Buffers = tuple[Tensor, Tensor]


@dataclass
class FusedClip:
    """Result of ``fused_ppo_clip``; every tensor is ``[B, T]`` unless noted."""

    loss: Tensor  # per-token loss, carries the gradient to logprobs
    neg_adv: Tensor  # -A, 0 on masked tokens
    ratio: Tensor  # exp(clamped log-ratio), 1 on masked tokens
    mask: Tensor  # bool
    metrics: dict[str, Tensor]  # the keys of base_metrics, 0-dim


def fusable(logprobs: Tensor, *eps: EpsLike) -> bool:
    """Whether ``fused_ppo_clip`` gives the results of the autograd path: per-token eps in the
    compute dtype (wider eps would promote the loss; the fused pass keeps one dtype)."""
    dtype = torch.promote_types(logprobs.dtype, torch.float32)
    return all(not isinstance(e, Tensor) or e.dtype == dtype for e in eps)


def fused_ppo_clip(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike,
    eps_high: EpsLike,
) -> FusedClip:
    """PPO clip ``max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))`` per token, its metrics, and a
    backward that gives ``-A r`` on in-band valid tokens and 0 elsewhere."""
    lp, old, adv, valid, eps_low, eps_high = check_inputs(
        logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high
    )
    with torch.no_grad():
        keep, log_ratio = _masked_log_ratio(lp, old, valid)
        ratio = log_ratio.exp()
        n = valid.sum()
        denom = n.clamp(min=1).to(ratio.dtype)
        metrics = policy_metrics(ratio, log_ratio, n, denom)
        scratch = log_ratio  # not needed any more: reused as a [B, T] buffer
        neg_adv = torch.where(valid, adv, lp.new_zeros(())).neg_()
        state = (torch.empty_like(ratio), keep, ratio, neg_adv)
        bufs = (scratch, torch.empty_like(ratio))
        n_high = _clip_side(True, eps_high, state, bufs)
        n_low = _clip_side(False, eps_low, state, bufs)
        loss = state[0]
        metrics.update(_clip_metrics(n_high, n_low, denom))
        # The mask as float {0, 1} for per-token eps means (products with bool are slow).
        per_token = isinstance(eps_low, Tensor) or isinstance(eps_high, Tensor)
        mask_f = bufs[1].copy_(valid.view(torch.uint8)) if per_token else valid
        metrics["clip/eps_high_mean"] = eps_mean(eps_high, mask_f, n, denom, out=scratch)
        metrics["clip/eps_low_mean"] = eps_mean(eps_low, mask_f, n, denom, out=scratch)
        grad_coef = keep.mul_(neg_adv)
    loss = _SurrogateGrad.apply(logprobs, loss, grad_coef, ratio)
    return FusedClip(loss, neg_adv, ratio, valid, _ordered(metrics))


def _masked_log_ratio(lp: Tensor, old: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """``(in_range, log_ratio)``: the clamped masked log-ratio (0 on masked tokens, so that
    NaN/inf padding never reaches the arithmetic) and, as float {0, 1}, where the clamp left
    the value unchanged (autograd's clamp passes a gradient exactly there; NaN: nowhere)."""
    raw = lp - old
    torch.where(valid, raw, lp.new_zeros(()), out=raw)
    log_ratio = raw.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.eq(raw, log_ratio, out=raw), log_ratio


def _bound(eps: EpsLike, *, upper: bool, out: Tensor) -> EpsLike:
    """The clip bound ``1 + eps_high`` (upper) or ``1 - eps_low``; a tensor bound is written
    into the scratch buffer ``out`` (no fresh ``[B, T]`` buffer for the per-token eps) with NaN
    replaced by +inf (upper) or -inf: a NaN bound never clips (every comparison with it is
    False), and neither does the bound of an eps of +inf, but ``clamp`` would carry a NaN into
    the loss. Floats are finite and >= 0 already (``check_inputs``); negative eps tensors are
    outside ``ppo_clip``'s contract."""
    if not isinstance(eps, Tensor):
        return 1.0 + eps if upper else 1.0 - eps
    eps = eps.expand(out.shape)  # eps may be [B, 1] or [T]: fill the whole buffer
    # -eps + 1 rounds exactly like 1 - eps (the same real number, one rounding).
    bound = torch.add(eps, 1.0, out=out) if upper else torch.neg(eps, out=out).add_(1.0)
    nan = math.inf if upper else -math.inf
    return torch.nan_to_num_(bound, nan=nan, posinf=math.inf, neginf=-math.inf)


def _clip_side(
    upper: bool, eps: EpsLike, state: tuple[Tensor, Tensor, Tensor, Tensor], bufs: Buffers
) -> Tensor:
    """One side of the clip, on ``state = (loss, keep, ratio, neg_adv)`` in place, with two
    scratch ``bufs`` (the bound, then the out-of-band indicator; the sign of A).

    Upper (first): ``loss = -A min(r, hi)``, and "high" tokens (A > 0, r > hi) leave ``keep``.
    Lower: ``loss = max(loss, -A max(r, lo))``, and "low" tokens (A < 0, r < lo) leave ``keep``.
    For A > 0 the wanted value is the larger of the two (min(r, hi) <= r <= max(r, lo)), for
    A < 0 too, so the max is TRL's ``max(-A r, -A clamp(r, lo, hi))`` value for value, without
    a selection by a mask. Returns the count of out-of-band tokens (float64, exact).
    """
    loss, keep, ratio, neg_adv = state
    scratch, sign = bufs
    bound = _bound(eps, upper=upper, out=scratch)
    if upper:
        torch.clamp(ratio, max=bound, out=loss).mul_(neg_adv)
    else:
        side = torch.clamp(ratio, min=bound).mul_(neg_adv)
        torch.maximum(loss, side, out=loss)
    # Comparisons into float {0, 1} (into bool they are several times slower on CPU). Masked
    # tokens have A = 0: never out of band.
    out_of_band = (torch.gt if upper else torch.lt)(ratio, bound, out=scratch)
    out_of_band.mul_((torch.lt if upper else torch.gt)(neg_adv, 0.0, out=sign))  # A > 0, A < 0
    keep.addcmul_(keep, out_of_band, value=-1.0)  # keep * (1 - out_of_band)
    return out_of_band.sum(dtype=torch.float64)


def _clip_metrics(n_high: Tensor, n_low: Tensor, denom: Tensor) -> dict[str, Tensor]:
    # Counts are rounded to denom's dtype once, as the int64 counts of base_metrics are.
    dtype = denom.dtype
    return {
        "clip/frac_high": n_high.to(dtype) / denom,
        "clip/frac_low": n_low.to(dtype) / denom,
        "clip/frac": (n_high + n_low).to(dtype) / denom,
    }


_KEY_ORDER: tuple[str, ...] = (
    "clip/frac_high",
    "clip/frac_low",
    "clip/frac",
    "clip/eps_high_mean",
    "clip/eps_low_mean",
    "policy/ratio_mean",
    "policy/approx_kl",
    "policy/kl_k1",
)


def _ordered(metrics: dict[str, Tensor]) -> dict[str, Tensor]:
    """The metrics in base_metrics' key order (logs and tables list keys in this order)."""
    return {key: metrics[key] for key in _KEY_ORDER}


class _SurrogateGrad(torch.autograd.Function):
    """Identity on the precomputed loss; backward to ``logprobs``: ``grad * grad_coef * ratio``
    with ``grad_coef = -A`` on tokens that get a gradient and 0 elsewhere."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logprobs: Tensor, loss: Tensor, grad_coef: Tensor, ratio: Tensor
    ) -> Tensor:
        ctx.save_for_backward(grad_coef, ratio)
        ctx.logprobs_dtype = logprobs.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        grad_coef, ratio = ctx.saved_tensors
        # (grad * -A) * r: the order autograd takes through -A * exp(log r), so the gradient
        # is the one of the graph this replaces, bit for bit (up to the sign of zeros).
        return (grad * grad_coef).mul_(ratio).to(ctx.logprobs_dtype), None, None, None

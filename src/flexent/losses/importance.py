"""Losses that reshape the importance weight of the plain policy gradient.

- CISPO (MiniMax-M1, arXiv 2506.13585), as verl 0.9.1 implements it
  (``compute_policy_loss_cispo``): the weight is the clipped ratio, under stop-gradient, so no
  token loses its gradient.
- ASPO (Archer2.0, arXiv 2510.06062), as its authors' code computes it (wizard-III/Archer2.0,
  ``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss_archer``, commit b08d963):
  positive-advantage tokens weight their gradient by the flipped ratio ``1 / r`` instead of
  ``r``, so tokens whose probability already rose are pushed less and tokens whose probability
  fell are pushed more; negative-advantage tokens keep PPO's clipped ``r``. Both sides have a
  soft dual clip: beyond it the weight is held at the constant ``c`` and the gradient is kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, base_metrics, out_of_band, prepare
from flexent.losses.clip import _like
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean


@register_policy_loss("cispo", default_agg="token-mean")
def cispo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
) -> LossOutput:
    """CISPO per token, with ``sg`` the stop-gradient:

        w    = sg(clip(r, 1 - eps_low, 1 + eps_high))
        loss = -w A logprobs

    The gradient with respect to the token's log-prob is ``-w A``: no token loses its gradient,
    the clip only bounds the weight. The value is verl's (it multiplies the log-prob itself, not
    the log-ratio). Defaults are verl's ``clip_ratio_low``/``clip_ratio_high``. Metrics: the
    common keys (``clip/frac_*``: tokens outside the band with the matching sign of A, for
    comparison with the clip losses) and ``cispo/frac_weight_clipped``, the tokens whose weight
    the clip changed whatever the sign of A (verl's ``actor/pg_clipfrac`` for ``cispo``). The
    paper normalises by the total number of tokens: ``token-mean`` (declared as the loss's
    ``default_agg``).

    >>> import torch
    >>> lp = torch.log(torch.tensor([[0.5, 0.25, 0.125]]))
    >>> old = torch.log(torch.tensor([[1 / 3, 1 / 3, 0.125]]))   # r = 1.5, 0.75, 1
    >>> out = cispo(lp, old, torch.tensor([1.0]), torch.ones(1, 3, dtype=torch.bool))
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]   # -w log p: w = 1.2, 0.8, 1
    [0.8318, 1.109, 2.0794]
    """
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    r = p.ratio
    # Selections rather than clamp: bit for bit verl's clamp with scalar eps, and a NaN
    # per-token eps never clips (as in the other losses).
    above, below = r > p.hi, r < p.lo
    w = torch.where(above, _like(p.hi, r), torch.where(below, _like(p.lo, r), r)).detach()
    loss = -w * p.advantages * p.masked_logprobs()
    metrics = base_metrics(p, *out_of_band(p, r))
    metrics["cispo/frac_weight_clipped"] = masked_mean((above | below).to(r.dtype), p.mask)
    return LossOutput(loss, metrics)


def _check_dual(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a float > 1, got {value!r}")
    if not (math.isfinite(value) and value > 1.0):
        raise ValueError(f"{name} must be a finite float > 1 (dual clip), got {value!r}")


@register_policy_loss("aspo", default_agg="token-mean")
def aspo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    clip_c: float = 3.0,
    clip_c_pos: float = 3.0,
) -> LossOutput:
    """ASPO per token (``sg`` the stop-gradient; value | gradient with respect to the log-prob):

        A < 0,  r > clip_c:              -A clip_c logprobs         | -A clip_c   (soft dual clip)
        A < 0,  r < 1 - eps_low:         -A (1 - eps_low)           | 0           (PPO clip)
        A < 0,  otherwise:               -A r                       | -A r
        A >= 0, r < 1 / clip_c_pos:      -A clip_c_pos logprobs     | -A clip_c_pos (soft dual clip)
        A >= 0, r > 1 + eps_high:        -A / (1 + eps_high)        | 0           (PPO clip)
        A >= 0, otherwise:               -A (r / sg(r)) / sg(r)     | -A / r      (flipped weight)

    The weights are continuous at both dual-clip boundaries; the values switch to the log-prob
    form there, as in the authors' code. Archer2.0's recipe clips with 0.2 the tokens at or below
    each response's 0.8 entropy quantile and with 0.4 the others: pass those as per-token
    ``eps_low``/``eps_high`` tensors to reproduce it (this loss takes no entropy). Metrics: the
    common keys (their tokens are the PPO-clipped rows), ``clip/frac_dual`` (A < 0,
    r > clip_c) and ``aspo/frac_dual_pos`` (A > 0, r < 1 / clip_c_pos). The authors' code
    always aggregates with ``token-mean`` (declared as the loss's ``default_agg``).

    >>> import torch
    >>> lp = torch.log(torch.tensor([[0.5, 1.0, 1.1]]))   # old log-probs 0, so r = 0.5, 1.0, 1.1
    >>> out = aspo(lp, torch.zeros(1, 3), torch.tensor([1.0]), torch.ones(1, 3, dtype=torch.bool))
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]   # -A / r
    [-2.0, -1.0, -0.9091]
    """
    _check_dual("clip_c", clip_c)
    _check_dual("clip_c_pos", clip_c_pos)
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    A, r, lp = p.advantages, p.ratio, p.masked_logprobs()
    high, low = out_of_band(p, r)
    neg = A < 0
    dual_neg = neg & (r > clip_c)
    dual_pos = ~neg & (r.reciprocal() > clip_c_pos)
    # r / sg(r): value 1, derivative 1 with respect to the log-prob (the gradient carrier).
    unit = torch.exp(p.log_ratio - p.log_ratio.detach())
    flipped = -A * unit / r.detach()
    pos = torch.where(
        dual_pos, -A * clip_c_pos * lp, torch.where(high, -A / _like(p.hi, r), flipped)
    )
    negative = torch.where(
        dual_neg, -A * clip_c * lp, torch.where(low, -A * _like(p.lo, r), -A * r)
    )
    loss = torch.where(neg, negative, pos)
    metrics = base_metrics(p, high, low)
    metrics["clip/frac_dual"] = masked_mean(dual_neg.to(r.dtype), p.mask)
    metrics["aspo/frac_dual_pos"] = masked_mean((dual_pos & (A > 0)).to(r.dtype), p.mask)
    return LossOutput(loss, metrics)

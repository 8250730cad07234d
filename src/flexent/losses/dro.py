"""DRO: the advantage-weighted log-likelihood with a quadratic log-ratio penalty, as verl 0.9.1
computes it (``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss_dro``, registered there as
``dro``). Direct Reward Optimization is Richemond et al. 2024 (arXiv 2405.19107); the same
quadratic penalty is Kimi k1.5's (arXiv 2501.12599).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, base_metrics, out_of_band, prepare
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean


@register_policy_loss("dro")
def dro(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    dro_beta: float = 0.05,
) -> LossOutput:
    """DRO per token, with ``l = logprobs - old_logprobs``:

        loss = -(A logprobs - dro_beta / 2 * l^2)
        d loss / d logprobs = -A + dro_beta * l

    Nothing is detached but ``old_logprobs`` and ``A`` (verl computes both without gradient);
    the penalty pulls each token's log-prob back to pi_old's with a force proportional to how far
    it moved, whatever the sign of A, and nothing is clipped. ``l`` is not clamped here (there is
    no exp to overflow), so values equal verl's for any finite input. verl aggregates with
    ``actor.loss_agg_mode`` and prescribes no mode (no ``default_agg``). ``eps_low`` /
    ``eps_high`` (verl's ``clip_ratio_low`` / ``clip_ratio_high`` defaults) only set the
    ``clip/frac_*`` metrics, for comparison with the clip losses.

    ``dro_beta`` is verl's ``policy_loss.dro_beta``. Departure: verl has no default (null, and
    its loss refuses a missing or non-positive value); flexent's is 0.05, the value of verl's
    usage example (PR #7245) and Tinker's DRO docs. Metrics: the common keys and
    ``dro/penalty_mean``, the valid-token mean of ``dro_beta / 2 * l^2``.

    >>> import math, torch
    >>> lp = torch.log(torch.tensor([[0.5, 0.25]]))
    >>> old = torch.log(torch.tensor([[0.25, 0.25]]))   # l = ln 2, 0
    >>> out = dro(lp, old, torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool), dro_beta=0.1)
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]   # -ln .5 + 0.05 ln(2)^2, -ln .25
    [0.7172, 1.3863]
    """
    if isinstance(dro_beta, bool) or not isinstance(dro_beta, (int, float)):
        raise ValueError(f"dro_beta must be a positive float, got {dro_beta!r}")
    if not (math.isfinite(dro_beta) and dro_beta > 0):
        raise ValueError(f"dro_beta must be a positive finite float, got {dro_beta!r}")
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    lp = p.masked_logprobs()
    zero = lp.new_zeros(())
    old = torch.where(p.mask, old_logprobs.detach().to(lp.dtype), zero)
    penalty = 0.5 * dro_beta * (lp - old).square()
    loss = penalty - p.advantages * lp
    metrics = base_metrics(p, *out_of_band(p, p.ratio))
    metrics["dro/penalty_mean"] = masked_mean(penalty.detach(), p.mask)
    return LossOutput(loss, metrics)

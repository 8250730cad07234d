"""SAPO: a soft, temperature-controlled gate instead of a hard clip (arXiv 2511.20347)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, base_metrics, out_of_band, prepare
from flexent.losses.registry import LossOutput, register_policy_loss


@register_policy_loss("sapo", default_agg="seq-mean-token-mean")
def sapo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> LossOutput:
    """SAPO per token: ``-f(r) A`` with ``f(r) = sigmoid(tau (r - 1)) * 4 / tau``, ``tau = tau_pos``
    when A > 0 and ``tau_neg`` otherwise. ``f'(1) = 1``, so near r = 1 it is the plain policy
    gradient, and the gradient decays smoothly (never to exactly 0) as r leaves 1. Nothing is
    clipped: ``eps_low``/``eps_high`` only feed the ``clip/frac_*`` metrics (tokens outside the
    band). The paper aggregates with ``seq-mean-token-mean``.
    """
    for name, tau in (("tau_pos", tau_pos), ("tau_neg", tau_neg)):
        if isinstance(tau, bool) or not isinstance(tau, (int, float)):
            raise ValueError(f"{name} must be a float > 0, got {tau!r}")
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"{name} must be a finite float > 0, got {tau!r}")
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    A, r = p.advantages, p.ratio
    taus = torch.where(A > 0, torch.tensor(float(tau_pos), dtype=r.dtype, device=r.device), tau_neg)
    gate = torch.sigmoid(taus * (r - 1.0)) * (4.0 / taus)
    high, low = out_of_band(p, r)
    return LossOutput(-gate * A, base_metrics(p, high, low))

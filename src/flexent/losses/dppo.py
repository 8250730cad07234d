"""DPPO-Binary-TV and DPPO-Binary-KL: a trust region on a divergence estimate instead of the ratio
(Qi et al. 2026, arXiv 2602.04879), as verl 0.9.1 implements them
(``compute_policy_loss_dppo_tv`` / ``compute_policy_loss_dppo_kl``).

Both keep the plain policy gradient ``-A sg(min(r, clip_c)) log pi`` on every token except those
that moved too far in the direction their advantage pushes: with ``p = exp(logprobs)`` and
``q = exp(old_logprobs)``, a token with A > 0 whose p rose too far, or with A <= 0 whose p fell
too far, is dropped (loss 0, gradient 0). "Too far" is the binary total variation ``|p - q|`` or
the binary KL between Bernoulli(q) and Bernoulli(p). ``eps_low``/``eps_high`` are these
divergence thresholds (delta_low, delta_high), not ratio offsets: verl reads them from
``clip_ratio_low``/``clip_ratio_high``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, Prepared, base_metrics, prepare
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean

# verl's guard in the binary KL's log((1 - q + c) / (1 - p + c)), for p or q = 1.
BINARY_KL_GUARD = 1e-8


def _check_clip_c(clip_c: float | None) -> None:
    if clip_c is None:
        return
    if isinstance(clip_c, bool) or not isinstance(clip_c, (int, float)):
        raise ValueError(f"clip_c must be a float > 0 or None, got {clip_c!r}")
    if not (math.isfinite(clip_c) and clip_c > 0.0):
        raise ValueError(
            f"clip_c must be a finite float > 0 (the ratio truncation), got {clip_c!r}"
        )


def _probs(p: Prepared, old_logprobs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(logp, logq, p, q)`` detached, in the compute dtype (padding may hold anything)."""
    logp = p.logprobs.detach()
    logq = old_logprobs.detach().to(logp.dtype)
    return logp, logq, logp.exp(), logq.exp()


def _masked_pg(p: Prepared, drop: Tensor, clip_c: float | None) -> LossOutput:
    """``-A sg(min(r, clip_c)) log pi`` on valid tokens not in ``drop`` (bool ``[B, T]``, may be
    True on padding), 0 elsewhere; with the metrics of both DPPO losses."""
    r = p.ratio
    weight = (r if clip_c is None else torch.clamp(r, max=float(clip_c))).detach()
    keep = p.mask & ~drop
    # verl's order of operations: -A * w * log pi * valid.
    loss = -p.advantages * weight * p.masked_logprobs() * keep.to(r.dtype)
    dropped = p.mask & drop
    metrics = base_metrics(p, dropped & (p.advantages > 0), dropped & (p.advantages < 0))
    if clip_c is not None:
        metrics["dppo/frac_truncated"] = masked_mean((keep & (r > clip_c)).to(r.dtype), p.mask)
    return LossOutput(loss, metrics)


@register_policy_loss("dppo_tv")
def dppo_tv(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.15,
    eps_high: EpsLike = 0.15,
    clip_c: float | None = 3.0,
) -> LossOutput:
    """DPPO-Binary-TV per token, ``p = exp(logprobs)``, ``q = exp(old_logprobs)``:

        dropped = (A > 0 and p - q > eps_high) or (A <= 0 and p - q < -eps_low)
        loss    = 0 if dropped else -A sg(min(r, clip_c)) logprobs

    For A > 0 the condition is ``r > 1 + eps_high / q`` (PPO's upper clip with the width
    ``eps_high / q``), for A < 0 it is ``r < 1 - eps_low / q``. ``clip_c`` truncates the weight
    (None: no truncation); its default is verl's ``actor.clip_ratio_c`` (3.0), which verl's
    ``dppo_tv`` reads; the DPPO authors' recipe sets 10000 (off). ``eps_low``/``eps_high``
    default to that recipe's TV threshold 0.15. A NaN threshold or divergence never drops a
    token. Metrics: the common keys, where ``clip/frac_high``/``clip/frac_low`` count the
    dropped tokens with A > 0 / A < 0, and ``dppo/frac_truncated`` (kept tokens with
    ``r > clip_c``; only when ``clip_c`` is set).

    >>> import torch
    >>> old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    >>> lp = torch.log(torch.tensor([[0.6, 0.7, 0.3]]))   # p - q = 0.1, 0.2, -0.2
    >>> out = dppo_tv(lp, old, torch.tensor([1.0]), torch.ones(1, 3, dtype=torch.bool))
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]   # 0.2 > 0.15: token 1 dropped
    [0.613, 0.0, 0.7224]
    """
    _check_clip_c(clip_c)
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    _, _, prob, old_prob = _probs(p, old_logprobs)
    diff = prob - old_prob
    drop = torch.where(p.advantages > 0, diff > p.eps_high, diff < -p.eps_low)
    return _masked_pg(p, drop, clip_c)


@register_policy_loss("dppo_kl")
def dppo_kl(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.05,
    eps_high: EpsLike = 0.05,
    clip_c: float | None = 3.0,
) -> LossOutput:
    """DPPO-Binary-KL per token, ``p = exp(logprobs)``, ``q = exp(old_logprobs)``:

        kl      = q (log q - log p) + (1 - q) log((1 - q + 1e-8) / (1 - p + 1e-8))
        dropped = (A > 0 and p > q and kl > eps_high) or (A <= 0 and p < q and kl > eps_low)
        loss    = 0 if dropped else -A sg(min(r, clip_c)) logprobs

    ``kl`` is KL(Bernoulli(q) || Bernoulli(p)), with verl's 1e-8 guard; a move in the direction
    the advantage does not push (p <= q for A > 0, p >= q for A <= 0) is never dropped.
    ``eps_low``/``eps_high`` default to the DPPO recipe's KL threshold 0.05; ``clip_c`` and the
    metrics are those of :func:`dppo_tv`.
    """
    _check_clip_c(clip_c)
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    logp, logq, prob, old_prob = _probs(p, old_logprobs)
    g = BINARY_KL_GUARD
    kl = old_prob * (logq - logp) + (1 - old_prob) * torch.log(
        (1.0 - old_prob + g) / (1.0 - prob + g)
    )
    drop_up = (kl > p.eps_high) & (prob > old_prob)
    drop_down = (kl > p.eps_low) & (prob < old_prob)
    drop = torch.where(p.advantages > 0, drop_up, drop_down)
    return _masked_pg(p, drop, clip_c)

"""BAPO: PPO clip whose ratio bounds are searched per batch for a balance of positive and negative
contributions (arXiv 2510.18927; WooooDyy/BAPO at 7287044, ``recipe/bapo/policy_loss.py``).

As the reference code does it, for every batch (every call):

1. contributions with ratio bounds (lo, hi): ``pos = sum over A >= 0 of min(r, hi) A``,
   ``neg = -sum over A < 0 of max(r, lo) A`` (valid tokens); ``balance = pos / (neg + eps)``
   (infinite when ``neg`` is 0);
2. lo runs from ``lo_start`` up by ``lo_step`` to ``lo_max`` (hi = ``hi_start``) and stops at
   the first value whose balance reaches ``target``; if none does, hi runs from ``hi_start`` up
   by ``hi_step`` to ``hi_max`` (lo at its final value) and stops likewise;
3. the loss is the PPO clip with ``clamp(r, lo, hi)`` and the dual clip ``clip_c`` for A < 0.

Departures, stated: the search is vectorised (every candidate evaluated at once, no ``.item()``);
the reference all-reduces ``pos`` / ``neg`` over data-parallel ranks, flexent's pure loss uses
the local batch (each rank may pick other bounds). The reference keeps no bounds from one batch
to the next, so there is no state to checkpoint (the paper's description of a running
adjustment is not what its code does; flexent follows the code). Raising ``lo`` makes ``neg``
larger, so the first loop cannot reach the target on its own; the code runs it anyway.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, check_inputs
from flexent.losses.clip import ppo_clip
from flexent.losses.registry import LossOutput, register_policy_loss


def _candidates(start: float, stop: float, step: float) -> list[float]:
    """``start``, ``start + step``, ... capped at ``stop`` (the reference's loop values)."""
    out = [start]
    while step > 0 and out[-1] < stop:
        out.append(min(out[-1] + step, stop))
    return out


def _contributions(
    ratio: Tensor, adv: Tensor, valid: Tensor, lo: Tensor, hi: Tensor
) -> tuple[Tensor, Tensor]:
    """``(pos, neg)`` for each pair of bounds ``lo [K]``, ``hi [K]``, each ``[K]``."""
    r, a = ratio.unsqueeze(0), adv.unsqueeze(0)
    eff = torch.where(
        a >= 0, torch.minimum(r, hi[:, None, None]), torch.maximum(r, lo[:, None, None])
    )
    contrib = eff * a * valid.unsqueeze(0)
    return contrib.clamp(min=0).sum((1, 2)), (-contrib.clamp(max=0)).sum((1, 2))


def _balance(
    ratio: Tensor, adv: Tensor, valid: Tensor, lo: Tensor, hi: Tensor, eps: float
) -> Tensor:
    """``pos / (neg + eps)`` for each pair of bounds (infinite when ``neg`` is 0) -> ``[K]``."""
    pos, neg = _contributions(ratio, adv, valid, lo, hi)
    return torch.where(neg <= 0, torch.full_like(pos, math.inf), pos / (neg + eps))


def _first_meeting(balance: Tensor, values: Tensor, target: float) -> tuple[Tensor, Tensor]:
    """The first candidate whose balance reaches ``target`` (else the last), and whether any did."""
    ok = balance >= target
    idx = torch.where(ok.any(), ok.to(torch.int64).argmax(), torch.tensor(len(values) - 1))
    return values[idx], ok.any()


@register_policy_loss("bapo", default_agg="token-mean", scalar_eps=True)
def bapo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    target: float = 0.5,
    lo_max: float = 0.95,
    lo_step: float = 0.05,
    hi_max: float = 2.0,
    hi_step: float = 0.1,
    clip_c: float | None = 3.0,
    eps: float = 1e-8,
) -> LossOutput:
    """BAPO (module docstring). The search starts at ``lo = 1 - eps_low``, ``hi = 1 + eps_high``
    (floats: the reference's starting bounds; defaults of its example script: 0.8 / 1.2, up to
    0.95 / 2.0 in steps of 0.05 / 0.1, target 0.5). Metrics: ppo_clip's, ``bapo/lo_shift`` and
    ``bapo/hi_shift`` (how far the search moved each bound from its start), ``bapo/pos_share``
    (``pos / (pos + neg)`` at the chosen bounds; 0 on an empty batch).

    >>> import torch
    >>> lp = torch.log(torch.tensor([[1.5, 0.5]]))  # r = 1.5 (A = +1), 0.5 (A = -1)
    >>> # balance = min(1.5, hi) / max(0.5, lo): at hi 1.2 at most 1.2 / 0.8 = 1.5 < 1.55, so
    >>> # lo ends at 0.95; then hi = 1.5 is the first with 1.5 / 0.95 = 1.58 >= 1.55
    >>> out = bapo(lp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2),
    ...            target=1.55)
    >>> [round(float(out.metrics[k]), 4) for k in ("bapo/lo_shift", "bapo/hi_shift")]
    [0.15, 0.3]
    """
    if isinstance(eps_low, Tensor) or isinstance(eps_high, Tensor):
        raise ValueError("bapo searches its own ratio bounds: eps_low / eps_high must be floats")
    for name, value in (("target", target), ("lo_step", lo_step), ("hi_step", hi_step)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    lo0, hi0 = 1.0 - float(eps_low), 1.0 + float(eps_high)
    if not (lo0 <= lo_max < 1.0 and hi_max >= hi0):
        raise ValueError(
            f"need 1 - eps_low ({lo0}) <= lo_max ({lo_max}) < 1 and hi_max ({hi_max}) >= "
            f"1 + eps_high ({hi0})"
        )
    lp, old, adv, valid, _, _ = check_inputs(
        logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high
    )
    with torch.no_grad():
        zero = lp.new_zeros(())
        ratio = torch.where(valid, lp.detach() - old, zero).clamp(-20.0, 20.0).exp()
        adv = torch.where(valid, adv.expand_as(ratio), zero)
        los = torch.tensor(_candidates(lo0, lo_max, lo_step), dtype=ratio.dtype)
        lo, met = _first_meeting(
            _balance(ratio, adv, valid, los, torch.full_like(los, hi0), eps), los, target
        )
        his = torch.tensor(_candidates(hi0, hi_max, hi_step), dtype=ratio.dtype)
        hi_search, _ = _first_meeting(
            _balance(ratio, adv, valid, lo.expand_as(his), his, eps), his, target
        )
        hi = torch.where(met, torch.tensor(hi0, dtype=ratio.dtype), hi_search)
        pos, neg = _contributions(ratio, adv, valid, lo.reshape(1), hi.reshape(1))
        share = pos[0] / (pos[0] + neg[0]).clamp(min=eps)
    out = ppo_clip(logprobs, old_logprobs, advantages, mask, eps_low=(1.0 - lo).to(lp.dtype),
                   eps_high=(hi - 1.0).to(lp.dtype), clip_c=clip_c)  # fmt: skip
    out.metrics.update(
        {"bapo/lo_shift": lo - lo0, "bapo/hi_shift": hi - hi0, "bapo/pos_share": share}
    )
    return out

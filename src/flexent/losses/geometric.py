"""GMPO: the geometric mean of a sequence's token ratios, each clipped in log space (Zhao et al.
2025, arXiv 2507.20673), as verl 0.9.1 computes it (``verl/trainer/ppo/core_algos.py``,
``compute_policy_loss_geo_mean``, registered there as ``geo_mean``; the authors' code is
callsys/GMPO ``train_zero_math_gmpo.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, base_metrics, prepare
from flexent.losses.clip import _like
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean


@register_policy_loss("gmpo", default_agg="seq-mean-token-mean", per_token_advantage=False)
def gmpo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.4,
    eps_high: EpsLike = 0.4,
) -> LossOutput:
    """GMPO for sequence i with valid tokens t = 1..n_i (``l_it = log r_it``):

        c_it = eps_high  if A_it > 0 and l_it > eps_high      (flat: no gradient)
               -eps_low  if A_it < 0 and l_it < -eps_low      (flat: no gradient)
               0         if A_it = 0                          (verl's sign(A) factor)
               l_it      otherwise
        s_i  = exp(mean_t c_it)                                (clipped geometric-mean ratio)
        L_i  = -mean_t(A_it) s_i

    and the per-token loss is ``L_i`` on every valid token of sequence i (0 on masked ones), so
    that ``seq-mean-token-mean`` (declared as ``default_agg``) reduces it to ``mean_i L_i``,
    GMPO's objective and verl's value (``torch.mean`` of the sequence losses), and its gradient
    with respect to ``logprobs_it`` is ``-mean(A_i) s_i / n_i`` on unclipped tokens. Other modes
    weight sequences differently (``token-mean``: by length). The clip is per token, in log
    space, with PPO's sign rule: ``eps`` (floats or per-token tensors) bound ``log r``, i.e. the
    ratio band is ``[exp(-eps_low), exp(eps_high)]``, not ``[1 - eps_low, 1 + eps_high]``.
    Defaults 0.4 / 0.4: the paper's and its code's ``cliprange`` (verl reads
    ``actor.clip_ratio_low`` / ``clip_ratio_high``, 0.2 by default).

    Departures from verl: token log-ratios are clamped to [-20, 20] first (as in every flexent
    loss; verl leaves that clamp commented out), which bites only on a token the clip leaves
    free (A > 0 with ``log r < -20``, A < 0 with ``log r > 20``: its value is held at the clamp
    and its gradient is 0) and keeps ``s_i`` finite where verl's overflows; empty sequences
    (no valid token) count in verl's mean over rows but not in ``seq-mean-token-mean`` (TRL's
    ``grpo`` normalisation counts them); ``n_i`` is not padded with verl's 1e-8.

    Metrics: the common keys, with ``clip/frac_high`` / ``clip/frac_low`` the tokens made flat
    by the clip (first two rows above; verl's ``actor/pg_clipfrac`` also counts out-of-band
    tokens the sign rule leaves free), and ``gmpo/seq_ratio_mean``, the valid-token mean of
    ``s_i``.

    >>> import math, torch
    >>> lp = torch.tensor([[math.log(1.2), math.log(0.9)]])   # old log-probs 0: log r as given
    >>> out = gmpo(lp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool))
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]   # -sqrt(1.2 * 0.9), on each token
    [-1.0392, -1.0392]
    """
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    A, lr = p.advantages, p.log_ratio
    # Selections rather than clamp: a NaN per-token eps never clips (as in the other losses).
    high = (A > 0) & (lr > p.eps_high)
    low = (A < 0) & (lr < -p.eps_low)
    zero = lr.new_zeros(())
    clipped = torch.where(high, _like(p.eps_high, lr), torch.where(low, -_like(p.eps_low, lr), lr))
    clipped = torch.where(A != 0, clipped, zero)  # masked tokens have A = 0 too
    n = p.mask.sum(-1, keepdim=True).clamp(min=1).to(lr.dtype)
    # |c_it| <= LOG_RATIO_CLAMP, so exp is finite.
    seq_ratio = (clipped.sum(-1, keepdim=True) / n).exp()
    seq_loss = -(A.sum(-1, keepdim=True) / n) * seq_ratio
    loss = torch.where(p.mask, seq_loss, zero)
    metrics = base_metrics(p, high, low)
    metrics["gmpo/seq_ratio_mean"] = masked_mean(seq_ratio.detach().expand_as(lr), p.mask)
    return LossOutput(loss, metrics)

"""VESPO: a gamma-shaped kernel on the sequence-level importance weight (Shen et al. 2026,
arXiv 2602.10693), as TRL 1.16 implements it (``trl/trainer/grpo_trainer.py``,
``GRPOTrainer.get_gamma_weights`` and ``loss_type="vespo"`` in ``_compute_loss``; defaults
``vespo_k_pos``/``vespo_lambda_pos``/``vespo_k_neg``/``vespo_lambda_neg`` in ``grpo_config.py``,
the same as the authors' recipes, FloyedShen/VESPO ``recipe/vespo/run/sync/vespo_N_8.sh``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike, base_metrics, out_of_band, prepare
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean

# TRL clamps log w to [log(1e-8), 20] ("matching truthfully the original implementation").
LOG_W_MIN = math.log(1e-8)
LOG_W_MAX = 20.0
# TRL raises a smaller lambda to this floor; flexent refuses it instead (same kernel otherwise).
LAMBDA_MIN = 1e-4


def _check_shape(name: str, value: float, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a float >= {minimum:g}, got {value!r}")
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} must be a finite float >= {minimum:g}, got {value!r}")


@register_policy_loss("vespo", default_agg="token-mean")
def vespo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    k_pos: float = 2.0,
    lambda_pos: float = 3.0,
    k_neg: float = 3.0,
    lambda_neg: float = 2.0,
) -> LossOutput:
    """VESPO per token, with ``sg`` the stop-gradient and ``i`` the token's sequence:

        log w_i = clamp(sum over valid t of log r_it, log 1e-8, 20)   (a product, no length norm)
        phi(w)  = w^k exp(lambda (1 - w))     k, lambda = k_pos, lambda_pos if A >= 0
                                                          else k_neg, lambda_neg
        loss    = -sg(phi(w_i)) A logprobs                (gradient -phi A on every token)

    ``phi(1) = 1`` (on policy this is REINFORCE), it peaks at ``w = k / lambda`` and decays to 0
    on both sides: ``k`` sets how fast stale sequences (``w < 1``) lose weight, ``lambda`` how fast
    over-weighted ones (``w > 1``) do. Token log-ratios are clamped to [-20, 20] before the sum,
    as in TRL, and TRL's ``nan_to_num`` of phi (an overflowing ``exp`` gives weight 0) is kept.
    Nothing is clipped: ``eps_low``/``eps_high`` only feed the ``clip/frac_*`` metrics (tokens
    whose own ratio is outside the band, with the matching sign of A). With per-token
    advantages ``[B, T]``, ``k, lambda`` follow each token's sign, as in TRL.

    Traits: ``default_agg`` ``token-mean`` (TRL normalises ``vespo`` like ``dapo``, by the
    token count; the authors' verl recipe keeps verl's default ``token-mean``). Not
    ``sequence_level``: the weight is per sequence but nothing is clipped, so no eps scale
    applies; per-token thresholds change only the metrics. Metrics: the common keys and
    ``vespo/phi_mean``, the valid-token mean of ``phi`` (TRL's ``vespo/phi_seq_mean`` is a mean
    over sequences, empty ones included).

    Departures from TRL: ``lambda_*`` below TRL's floor 1e-4 and negative ``k_*`` (which TRL
    takes) raise ValueError, so every accepted setting gives TRL's weight; TRL folds vLLM's
    token importance ratio ``pi_old / pi_sampler`` into ``w`` when its correction is on, while
    this loss sees only ``pi_old`` (the engine's sampler correction stays outside the loss).

    >>> import torch
    >>> lp = torch.log(torch.tensor([[0.5, 0.25]]))
    >>> out = vespo(lp, lp, torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool))
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]   # w = 1, phi = 1: -log p
    [0.6931, 1.3863]
    """
    _check_shape("k_pos", k_pos, 0.0)
    _check_shape("k_neg", k_neg, 0.0)
    _check_shape("lambda_pos", lambda_pos, LAMBDA_MIN)
    _check_shape("lambda_neg", lambda_neg, LAMBDA_MIN)
    p = prepare(logprobs, old_logprobs, advantages, mask, eps_low=eps_low, eps_high=eps_high)
    A, r = p.advantages, p.ratio
    # Masked tokens have log-ratio 0 (prepare), so the plain sum is the sum over valid tokens.
    log_w = p.log_ratio.detach().sum(-1, keepdim=True).clamp(LOG_W_MIN, LOG_W_MAX)
    nonneg = A >= 0
    k = torch.where(nonneg, torch.tensor(float(k_pos), dtype=r.dtype, device=r.device), k_neg)
    lam = torch.where(
        nonneg, torch.tensor(float(lambda_pos), dtype=r.dtype, device=r.device), lambda_neg
    )
    phi = torch.exp(lam + k * log_w - lam * log_w.exp())
    phi = torch.nan_to_num(phi, nan=0.0, posinf=0.0, neginf=0.0)
    loss = -phi * A * p.masked_logprobs()
    metrics = base_metrics(p, *out_of_band(p, r))
    metrics["vespo/phi_mean"] = masked_mean(phi, p.mask)
    return LossOutput(loss, metrics)

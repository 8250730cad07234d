"""Policy losses for RLVR: a registry of pure per-token losses plus one aggregation step.

>>> import torch
>>> from flexent.losses import compute_policy_loss
>>> lp = torch.log(torch.tensor([[1.5, 1.0, 0.5]]))
>>> loss, metrics = compute_policy_loss(
...     "ppo_clip", lp, torch.zeros(1, 3), torch.tensor([1.0]), torch.ones(1, 3),
...     eps_low=0.2, eps_high=0.28)
>>> round(float(loss), 4), round(float(metrics["clip/frac_high"]), 4)
(-0.9267, 0.3333)

Importing this package registers ``ppo_clip``, ``ce_gppo``, ``clip_cov``, ``kl_cov``, ``gspo``,
``luspo``, ``sapo``, ``vespo``, ``cispo``, ``dppo_tv``, ``dppo_kl``, ``aspo``, ``archer``, ``bapo``,
``gmpo``, ``dro``, ``clip_b``, ``clip_v`` and ``erc``, each with its
:class:`LossTraits`; see docs/losses.md. :func:`prepare` and :func:`out_of_band` are the input
handling and clip test every loss starts from (the diagnostics reuse them).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flexent.losses import (  # noqa: F401  (registers the losses)
    balanced,
    clip,
    cov,
    dppo,
    entropy_clip,
    entropy_gated,
    geometric,
    importance,
    sequence,
    soft,
)
from flexent.losses._common import LOG_RATIO_CLAMP, EpsLike, Prepared, out_of_band, prepare
from flexent.losses.aggregate import AGG_MODES, aggregate, entropy_bonus
from flexent.losses.balanced import bapo
from flexent.losses.clip import ce_gppo, ppo_clip, ppo_clip_reference
from flexent.losses.cov import clip_cov, kl_cov
from flexent.losses.dppo import dppo_kl, dppo_tv
from flexent.losses.dro import dro
from flexent.losses.entropy_clip import clip_b, clip_v, erc
from flexent.losses.entropy_gated import archer, high_entropy_mask, sequence_quantile_mask
from flexent.losses.geometric import gmpo
from flexent.losses.importance import aspo, cispo
from flexent.losses.registry import (
    LossOutput,
    LossTraits,
    check_loss_params,
    get_policy_loss,
    list_policy_losses,
    loss_param_names,
    loss_traits,
    register_policy_loss,
    user_param_names,
)
from flexent.losses.sequence import gspo, luspo
from flexent.losses.soft import sapo
from flexent.losses.vespo import vespo

__all__ = [
    "AGG_MODES",
    "LOG_RATIO_CLAMP",
    "LossOutput",
    "LossTraits",
    "Prepared",
    "aggregate",
    "archer",
    "aspo",
    "bapo",
    "ce_gppo",
    "check_loss_params",
    "cispo",
    "clip_b",
    "clip_cov",
    "clip_v",
    "compute_policy_loss",
    "dppo_kl",
    "dppo_tv",
    "dro",
    "entropy_bonus",
    "erc",
    "get_policy_loss",
    "gmpo",
    "gspo",
    "high_entropy_mask",
    "kl_cov",
    "list_policy_losses",
    "loss_param_names",
    "loss_traits",
    "luspo",
    "out_of_band",
    "ppo_clip",
    "ppo_clip_reference",
    "prepare",
    "register_policy_loss",
    "sapo",
    "sequence_quantile_mask",
    "user_param_names",
    "vespo",
]


def compute_policy_loss(
    name: str,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike | None = None,
    eps_high: EpsLike | None = None,
    agg_mode: str = "token-mean",
    norm_const: float | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    **params: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Look up loss ``name``, run it, add the optional entropy bonus and aggregate.

    ``eps_low``/``eps_high`` left as None take the loss's own defaults. ``entropy`` (the
    current policy's per-token entropy ``[B, T]``) feeds the bonus and, for a loss with the
    ``needs_entropy`` trait (``archer``), the loss. Returns the 0-dim loss and the loss's
    metrics plus ``policy/loss`` (the aggregated loss, detached; with the bonus when one is
    applied). Unknown ``params`` raise ValueError listing the loss's parameters.
    """
    fn = get_policy_loss(name)
    accepted = loss_param_names(fn)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"policy loss {name!r} got unknown parameters {unknown}; it accepts {accepted}"
        )
    if eps_low is not None:
        params["eps_low"] = eps_low
    if eps_high is not None:
        params["eps_high"] = eps_high
    if loss_traits(name).needs_entropy:
        params["entropy"] = entropy  # the same per-token entropy feeds the loss and the bonus
    out = fn(logprobs, old_logprobs, advantages, mask, **params)
    per_token = out.per_token_loss
    if entropy is not None and entropy_coef != 0.0:
        per_token = entropy_bonus(per_token, entropy, entropy_coef)
    loss = aggregate(per_token, mask, agg_mode, norm_const=norm_const)
    metrics = dict(out.metrics)
    metrics["policy/loss"] = loss.detach()
    return loss, metrics

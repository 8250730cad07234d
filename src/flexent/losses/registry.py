"""The policy-loss registry, the traits each loss declares, and the loss output type.

A policy loss is a pure function

    fn(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, **params) -> LossOutput

with ``logprobs``/``old_logprobs``/``mask`` ``[B, T]``, ``advantages`` ``[B]`` or ``[B, T]`` and
``eps_low``/``eps_high`` floats or tensors broadcastable to ``[B, T]``. It returns the unreduced
per-token loss; reduction is the separate step :func:`flexent.losses.aggregate`.

What an engine adapter must know about a loss (does it clip one ratio per sequence, does it
need a random generator, which aggregation does its paper use) is declared once, where the loss
is registered, as :class:`LossTraits`; adapters read the traits and never test names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class LossOutput:
    """``per_token_loss`` ``[B, T]`` (exactly 0 on masked tokens) and 0-dim tensor metrics."""

    per_token_loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class LossTraits:
    """What a registered loss needs from, and tells, the code that calls it.

    Args:
        sequence_level: the loss clips one ratio per sequence, with bounds about 1e-4 wide, so
            per-token thresholds (every strategy but ``static``) have no meaning for it and
            token-level eps values (0.2) almost never clip.
        default_agg: the aggregation mode the loss's paper prescribes, if it prescribes one
            (adapters warn when a run uses another).
        needs_generator: the loss takes ``generator=torch.Generator`` for its random draws; the
            adapters supply one, seeded per training step (reproducible across resume).
        needs_entropy: the loss takes ``entropy=`` (the current policy's per-token entropy
            ``[B, T]``, detached); the adapters supply it.
        needs_old_entropy: the loss takes ``old_entropy=`` (pi_old's per-token entropy
            ``[B, T]``, detached: the policy that sampled the batch, computed where its
            log-probs were); the adapters supply it.
        needs_old_second_term: the loss takes ``old_second_term=`` (pi_old's per-token
            ``sum_x p_x^2 (ln p_x + H)`` ``[B, T]``, detached: the vocabulary-wide part of the
            first-order entropy change, :func:`flexent.diagnostics.entropy_second_term` of
            pi_old's logits); the adapters supply it.
        scalar_eps: the loss sets its own clip bounds from scalar ``eps_low`` / ``eps_high``
            (the start of a search), so per-token thresholds (every strategy but ``static``)
            do not apply.
        per_token_advantage: each token's loss depends on that token's advantage alone,
            linearly for a given sign, so the loss-weight controllers' advantage shaping
            (:mod:`flexent.control.shaping`) reweights tokens; False for ``gmpo`` (it
            averages A over the sequence).
    """

    sequence_level: bool = False
    default_agg: str | None = None
    needs_generator: bool = False
    needs_entropy: bool = False
    needs_old_entropy: bool = False
    needs_old_second_term: bool = False
    scalar_eps: bool = False
    per_token_advantage: bool = True

    def adapter_params(self) -> set[str]:
        """Loss parameters the adapters supply themselves (not settable in ``loss_params``)."""
        flags = (
            (self.needs_generator, "generator"),
            (self.needs_entropy, "entropy"),
            (self.needs_old_entropy, "old_entropy"),
            (self.needs_old_second_term, "old_second_term"),
        )
        return {name for needed, name in flags if needed}


PolicyLossFn = Callable[..., LossOutput]

_REGISTRY: dict[str, PolicyLossFn] = {}
_TRAITS: dict[str, LossTraits] = {}
COMMON_PARAMS = ("logprobs", "old_logprobs", "advantages", "mask", "eps_low", "eps_high")


def register_policy_loss(name: str, **traits: Any) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator registering ``fn`` under ``name`` with its :class:`LossTraits` (keyword
    arguments); registering a taken name raises ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"policy loss name must be a non-empty string, got {name!r}")
    spec = LossTraits(**traits)

    def decorator(fn: PolicyLossFn) -> PolicyLossFn:
        if name in _REGISTRY:
            raise ValueError(
                f"policy loss {name!r} is already registered (by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__}); choose another name"
            )
        _REGISTRY[name] = fn
        _TRAITS[name] = spec
        return fn

    return decorator


def get_policy_loss(name: str) -> PolicyLossFn:
    """The loss registered under ``name``; an unknown name raises ValueError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown policy loss {name!r}; valid names: {', '.join(list_policy_losses())}"
        ) from None


def loss_traits(name: str) -> LossTraits:
    """The :class:`LossTraits` of loss ``name`` (unknown names raise like :func:`get_policy_loss`)."""
    get_policy_loss(name)
    return _TRAITS[name]


def list_policy_losses() -> list[str]:
    """Registered loss names, sorted."""
    return sorted(_REGISTRY)


def loss_param_names(fn: Any) -> list[str]:
    """Keyword parameters a loss accepts beyond the common ones (for error messages and docs)."""
    return [p for p in inspect.signature(fn).parameters if p not in COMMON_PARAMS]


def user_param_names(name: str) -> list[str]:
    """The parameters of loss ``name`` a user may set (``loss_params``): all of
    :func:`loss_param_names` except those the adapters supply (:meth:`LossTraits.adapter_params`).

    >>> import flexent.losses
    >>> user_param_names("clip_cov")
    ['clip_cov_ratio', 'clip_cov_lb', 'clip_cov_ub']
    """
    supplied = loss_traits(name).adapter_params()
    return [p for p in loss_param_names(get_policy_loss(name)) if p not in supplied]


def check_loss_params(name: str, params: Any) -> dict[str, Any]:
    """``params`` as a dict after checking that loss ``name`` accepts every key as a user
    parameter; raises ValueError naming the unknown keys and the accepted ones."""
    if not isinstance(params, Mapping):
        raise ValueError(f"loss_params must be a mapping, got {params!r}")
    accepted = user_param_names(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"policy loss {name!r} got unknown parameters {unknown}; it accepts {accepted}"
        )
    return dict(params)

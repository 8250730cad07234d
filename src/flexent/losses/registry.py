"""The policy-loss registry and the loss output type.

A policy loss is a pure function

    fn(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, **params) -> LossOutput

with ``logprobs``/``old_logprobs``/``mask`` ``[B, T]``, ``advantages`` ``[B]`` or ``[B, T]`` and
``eps_low``/``eps_high`` floats or tensors broadcastable to ``[B, T]``. It returns the unreduced
per-token loss; reduction is the separate step :func:`flexent.losses.aggregate`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class LossOutput:
    """``per_token_loss`` ``[B, T]`` (exactly 0 on masked tokens) and 0-dim tensor metrics."""

    per_token_loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


PolicyLossFn = Callable[..., LossOutput]

_REGISTRY: dict[str, PolicyLossFn] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator registering ``fn`` under ``name``; registering a taken name raises ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"policy loss name must be a non-empty string, got {name!r}")

    def decorator(fn: PolicyLossFn) -> PolicyLossFn:
        if name in _REGISTRY:
            raise ValueError(
                f"policy loss {name!r} is already registered (by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__}); choose another name"
            )
        _REGISTRY[name] = fn
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


def list_policy_losses() -> list[str]:
    """Registered loss names, sorted."""
    return sorted(_REGISTRY)


def loss_param_names(fn: Any) -> list[str]:
    """Keyword parameters a loss accepts beyond the common ones (for error messages and docs)."""
    common = {"logprobs", "old_logprobs", "advantages", "mask", "eps_low", "eps_high"}
    return [p for p in inspect.signature(fn).parameters if p not in common]

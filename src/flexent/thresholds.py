"""Probability-dependent clipping thresholds (METHOD §3) mixed with a static eps (§4).

Each threshold is a decreasing linear function of the token probability p,

    upper: H(p) = alpha_u * p + beta_u        lower: M(p) = alpha_l * p + beta_l

and the effective per-token bounds of the clipped surrogate are

    eps_high = w_up  * clamp(H_eff(p)) + (1 - w_up)  * eps_std
    eps_low  = w_low * clamp(M_eff(p)) + (1 - w_low) * eps_std

where ``H_eff`` / ``M_eff`` depend on ``mode``:

- ``implicit`` (default, the paper's closed form): the paper defines eps on the *current*
  probability and solves ``r <= 1 + H(pi_theta)`` for r, so the bound depends on pi_old only:
  ``eps_high = (1 + beta_u) / (1 - alpha_u p_old) - 1`` and
  ``eps_low = 1 - (1 - beta_l) / (1 + alpha_l p_old)``.
- ``old``: ``H(p_old)``, ``M(p_old)``.
- ``detached``: ``H(sg(pi_theta))``, ``M(sg(pi_theta))`` on the detached current probability.

A float instead of ``(alpha, beta)`` is a fixed eps (the clip-higher / clip-lower ablation of
§4: the same strategies, with H(p) or M(p) replaced by a constant). Fixed floats are used as
given; only the probability-dependent values are clamped to ``eps_clamp``. The mix is written
``w * dyn + (1 - w) * eps_std`` so that ``w = 0`` gives exactly ``eps_std`` and ``w = 1`` exactly
the dynamic value.

>>> import math, torch
>>> th = DynamicThresholds()
>>> old = torch.tensor([[float("-inf"), math.log(0.5), 0.0]])   # p_old = 0, 0.5, 1
>>> eps_low, eps_high = th(old, w_up=1.0, w_low=1.0)
>>> [round(v, 4) for v in eps_high[0].tolist()], [round(v, 4) for v in eps_low[0].tolist()]
([0.5, 0.3333, 0.2], [0.3, 0.2513, 0.1954])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

MODES = ("implicit", "old", "detached")

Linear = tuple[float, float]


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_open_unit(name: str, value: Any) -> float:
    value = _check_number(name, value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return value


def _check_eps(name: str, value: Any, *, upper: bool) -> float:
    """A clip width: in (0, 1) on the lower side (the bound 1 - eps must stay positive), any
    positive finite value on the upper side (1 + eps)."""
    if not upper:
        return _check_open_unit(name, value)
    value = _check_number(name, value)
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _check_eps_std(value: Any) -> float | tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"eps_std must be a float or a pair (low, high), got {value!r}")
        return (
            _check_eps("eps_std[0] (low)", value[0], upper=False),
            _check_eps("eps_std[1] (high)", value[1], upper=True),
        )
    return _check_open_unit("eps_std", value)


def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        raise ValueError(f"{name} must be a Python float in [0, 1], got a tensor")
    value = _check_number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return value


def _check_linear(name: str, value: Any, *, lower_side: bool, mode: str) -> Linear | float:
    """Validate ``(alpha, beta)`` (decreasing line) or a fixed float eps."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _check_eps(name, value, upper=not lower_side)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a float or a pair (alpha, beta), got {value!r}")
    alpha = _check_number(f"{name}[0] (alpha)", value[0])
    beta = _check_eps(f"{name}[1] (beta)", value[1], upper=not lower_side)
    if alpha >= 0.0:
        raise ValueError(f"{name}[0] (alpha) must be < 0 (a decreasing threshold), got {alpha!r}")
    if lower_side and mode == "implicit" and 1.0 + alpha <= 0.0:
        # eps_low = 1 - (1 - beta) / (1 + alpha p) needs 1 + alpha p > 0 for all p in [0, 1].
        raise ValueError(f"{name}[0] (alpha) must be > -1 in implicit mode, got {alpha!r}")
    return (alpha, beta)


@dataclass(frozen=True)
class DynamicThresholds:
    """Per-token clipping thresholds ``eps_low, eps_high`` (see module docstring).

    Args:
        upper: ``(alpha_u, beta_u)`` with ``alpha_u < 0``, or a fixed eps_high > 0.
        lower: ``(alpha_l, beta_l)`` with ``alpha_l < 0``, or a fixed eps_low in (0, 1).
        eps_std: the static eps mixed in with weight ``1 - w`` (GRPO's 0.2), or a pair
            ``(eps_std_low, eps_std_high)`` for an asymmetric static clip (DAPO's
            clip-higher is ``(0.2, 0.28)``), so the ``static`` strategy can run it.
        eps_clamp: ``(eps_min, eps_max)`` applied to the probability-dependent values
            (``eps_min`` in (0, 1); ``eps_max`` > 0: the lower side never exceeds its beta < 1).
        mode: ``"implicit"`` | ``"old"`` | ``"detached"``.
    """

    upper: Linear | float = (-0.25, 0.5)
    lower: Linear | float = (-0.13, 0.3)
    eps_std: float | tuple[float, float] = 0.2
    eps_clamp: tuple[float, float] = (0.05, 0.6)
    mode: str = "implicit"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        upper = _check_linear("upper", self.upper, lower_side=False, mode=self.mode)
        lower = _check_linear("lower", self.lower, lower_side=True, mode=self.mode)
        eps_std = _check_eps_std(self.eps_std)
        if not isinstance(self.eps_clamp, (tuple, list)) or len(self.eps_clamp) != 2:
            raise ValueError(f"eps_clamp must be a pair (eps_min, eps_max), got {self.eps_clamp!r}")
        lo = _check_open_unit("eps_clamp[0] (eps_min)", self.eps_clamp[0])
        hi = _check_eps("eps_clamp[1] (eps_max)", self.eps_clamp[1], upper=True)
        if lo > hi:
            raise ValueError(f"eps_clamp must have eps_min <= eps_max, got {self.eps_clamp!r}")
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "eps_std", eps_std)
        object.__setattr__(self, "eps_clamp", (lo, hi))

    def __call__(
        self,
        old_logprobs: Tensor,
        w_up: float = 1.0,
        w_low: float = 0.0,
        logprobs: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(eps_low, eps_high)``, each shaped like ``old_logprobs`` ``[B, T]``.

        ``logprobs`` (current policy, ``[B, T]``) is needed only in ``detached`` mode. The
        outputs carry no gradient and are float32 or wider.
        """
        w_up = _check_weight("w_up", w_up)
        w_low = _check_weight("w_low", w_low)
        p = self._probabilities(old_logprobs, logprobs)
        eps_high = self._mix(p, w_up, upper=True, reuse=False)
        # p is not needed after this, so the lower threshold is computed in p's own buffer.
        eps_low = self._mix(p, w_low, upper=False, reuse=True)
        return eps_low, eps_high

    def _probabilities(self, old_logprobs: Tensor, logprobs: Tensor | None) -> Tensor:
        source = old_logprobs
        if self.mode == "detached":
            if logprobs is None:
                raise ValueError("mode='detached' needs logprobs (the current policy's), got None")
            if logprobs.shape != old_logprobs.shape:
                raise ValueError(
                    f"logprobs shape {tuple(logprobs.shape)} != old_logprobs shape "
                    f"{tuple(old_logprobs.shape)}"
                )
            source = logprobs
        dtype = torch.promote_types(source.dtype, torch.float32)
        # Log-probs are <= 0; clamp rounding noise so that p stays in [0, 1].
        return source.detach().to(dtype).clamp(max=0.0).exp_()

    def _dynamic(self, p: Tensor, spec: Linear, *, upper: bool, reuse: bool) -> Tensor:
        alpha, beta = spec
        # One multiply (into p itself when reuse), then in-place steps: no gradient is needed,
        # and every extra [B, T] temporary costs time and memory in the training step.
        slope = -alpha if (upper and self.mode == "implicit") else alpha
        eps = p.mul_(slope) if reuse else p * slope
        if self.mode != "implicit":
            eps.add_(beta)  # alpha p + beta
        elif upper:
            eps.add_(1.0).reciprocal_().mul_(1.0 + beta).sub_(1.0)  # (1+b)/(1-a p) - 1
        else:
            eps.add_(1.0).reciprocal_().mul_(beta - 1.0).add_(1.0)  # 1 - (1-b)/(1+a p)
        lo, hi = self.eps_clamp
        # eps is monotone in p and p lies in [0, 1], so its range is [f(1), f(0)]; skip the
        # clamp pass when that range is inside [lo, hi] (the result is identical).
        f0, f1 = self._scalar(spec, 0.0, upper=upper), self._scalar(spec, 1.0, upper=upper)
        if lo <= min(f0, f1) and max(f0, f1) <= hi:
            return eps
        return eps.clamp_(lo, hi)

    def _scalar(self, spec: Linear, p: float, *, upper: bool) -> float:
        """The unclamped dynamic eps at a Python-float probability (same formulas as above)."""
        alpha, beta = spec
        if self.mode != "implicit":
            return alpha * p + beta
        if upper:
            return (1.0 + beta) / (1.0 - alpha * p) - 1.0
        return 1.0 - (1.0 - beta) / (1.0 + alpha * p)

    def _mix(self, p: Tensor, w: float, *, upper: bool, reuse: bool) -> Tensor:
        # The end points are returned as they are, so that w = 0 is exactly eps_std even where
        # p is NaN (e.g. garbage in padded positions) and w = 1 is exactly the dynamic value.
        std = self.std_eps(upper=upper)
        if w == 0.0:
            return torch.full_like(p, std)
        spec = self.upper if upper else self.lower
        if isinstance(spec, float):
            return torch.full_like(p, w * spec + (1.0 - w) * std)
        dyn = self._dynamic(p, spec, upper=upper, reuse=reuse)
        if w == 1.0:
            return dyn
        return dyn.mul_(w).add_((1.0 - w) * std)  # dyn is a fresh tensor of ours

    def std_eps(self, *, upper: bool) -> float:
        """The static eps of one side: ``eps_std``, or its ``high`` / ``low`` element.

        >>> DynamicThresholds(eps_std=(0.2, 0.28)).std_eps(upper=True)
        0.28
        """
        if isinstance(self.eps_std, tuple):
            return self.eps_std[1] if upper else self.eps_std[0]
        return self.eps_std

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DynamicThresholds:
        """Build from a plain mapping (e.g. a YAML section); unknown keys are errors."""
        if not isinstance(d, Mapping):
            raise ValueError(f"thresholds config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown thresholds keys {unknown}; valid keys: {sorted(known)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-friendly dict (pairs as lists) that ``from_dict`` reads back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

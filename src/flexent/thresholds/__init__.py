"""Probability-dependent clipping thresholds (docs/method.md §3, §5b) mixed with a static eps
(docs/method.md §4).

Each side of the clip band is a *family* eps(q) of a token probability q (:mod:`.families`):
``upper`` gives eps_high and ``lower`` gives eps_low, and the strategies' weights mix them with
the static eps,

    eps_high = w_up  * clamp(upper(q)) + (1 - w_up)  * eps_std
    eps_low  = w_low * clamp(lower(q)) + (1 - w_low) * eps_std

with q = pi_old, or the detached current probability in ``detached`` mode. The default family
is the paper's decreasing line H(p) = alpha p + beta (``linear``), in one of three ``mode`` s:

- ``implicit`` (default, the paper's closed form): the paper defines eps on the *current*
  probability and solves ``r <= 1 + H(pi_theta)`` for r, so the bound depends on pi_old only:
  ``eps_high = (1 + beta_u) / (1 - alpha_u p_old) - 1`` and
  ``eps_low = 1 - (1 - beta_l) / (1 + alpha_l p_old)``.
- ``old``: ``H(p_old)``, ``M(p_old)``.
- ``detached``: ``H(sg(pi_theta))``, ``M(sg(pi_theta))`` on the detached current probability.

The other families are ``tv`` (DPPO-Binary-TV, eps = delta / q), ``dcpo`` (DCPO's ratio
bounds) and ``fixed`` (a float: the clip-higher / clip-lower ablation of §4); ``tv`` and
``dcpo`` are already bounds on pi_old, so ``implicit`` and ``old`` mean the same for them.
``clamp`` is to ``eps_clamp`` and acts on the families whose ``clamp`` parameter is true (the
default); a fixed float is used as given. The mix is written ``w * dyn + (1 - w) * eps_std`` so
that ``w = 0`` gives exactly ``eps_std`` (whatever q, NaN included) and ``w = 1`` exactly the
family's value.

>>> import math, torch
>>> th = DynamicThresholds()
>>> old = torch.tensor([[float("-inf"), math.log(0.5), 0.0]])   # p_old = 0, 0.5, 1
>>> eps_low, eps_high = th(old, w_up=1.0, w_low=1.0)
>>> [round(v, 4) for v in eps_high[0].tolist()], [round(v, 4) for v in eps_low[0].tolist()]
([0.5, 0.3333, 0.2], [0.3, 0.2513, 0.1954])
>>> tv = DynamicThresholds(upper={"family": "tv", "delta": 0.2, "clamp": False})
>>> [round(v, 4) for v in tv(old, w_up=1.0)[1][0].tolist()]   # 0.2 / p_old
[inf, 0.4, 0.2]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from flexent.thresholds._checks import check_clamp, check_eps_std, check_weight
from flexent.thresholds.families import (
    LINEAR_LOWER,
    LINEAR_UPPER,
    THRESHOLD_FAMILIES,
    DCPOThreshold,
    FixedThreshold,
    LinearThreshold,
    ThresholdFamily,
    TVThreshold,
    parse_family,
    register_threshold_family,
    value_range,
)

__all__ = [
    "MODES",
    "THRESHOLD_FAMILIES",
    "DCPOThreshold",
    "DynamicThresholds",
    "FixedThreshold",
    "LinearThreshold",
    "TVThreshold",
    "ThresholdFamily",
    "register_threshold_family",
]

MODES = ("implicit", "old", "detached")

# What `upper` / `lower` accept: a family, a float (fixed), a pair (linear) or a mapping.
ThresholdSpec = ThresholdFamily | tuple[float, float] | float | Mapping[str, Any]


def _short(family: ThresholdFamily) -> ThresholdFamily | tuple[float, float] | float:
    """The stored form of a side: its YAML-plain form with pairs as tuples, or the family when
    that form is a mapping (frozen, hashable)."""
    plain = family.to_plain()
    if isinstance(plain, list):
        return (plain[0], plain[1])
    return plain if isinstance(plain, float) else family


@dataclass(frozen=True)
class DynamicThresholds:
    """Per-token clipping thresholds ``eps_low, eps_high`` (see module docstring).

    Args:
        upper: the family of eps_high: ``(alpha_u, beta_u)`` (``linear``, ``alpha_u < 0``), a
            fixed eps_high > 0, a mapping ``{"family": name, **parameters}`` (e.g.
            ``{"family": "tv", "delta": 0.2}``) or a :class:`ThresholdFamily`. Stored
            validated, in its shortest form: ``(alpha, beta)`` for a clamped ``linear``, a
            float for ``fixed``, else the :class:`ThresholdFamily` (:meth:`family` always
            gives the family).
        lower: the same for eps_low (a fixed eps_low lies in (0, 1)).
        eps_std: the static eps mixed in with weight ``1 - w`` (GRPO's 0.2), or a pair
            ``(eps_std_low, eps_std_high)`` for an asymmetric static clip (DAPO's
            clip-higher is ``(0.2, 0.28)``), so the ``static`` strategy can run it.
        eps_clamp: ``(eps_min, eps_max)`` applied to the values of the families with
            ``clamp`` true (``eps_min`` in (0, 1); ``eps_max`` > 0).
        mode: ``"implicit"`` | ``"old"`` | ``"detached"``.
    """

    upper: ThresholdSpec = LINEAR_UPPER
    lower: ThresholdSpec = LINEAR_LOWER
    eps_std: float | tuple[float, float] = 0.2
    eps_clamp: tuple[float, float] = (0.05, 0.6)
    mode: str = "implicit"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        upper = parse_family("upper", self.upper, mode=self.mode)
        lower = parse_family("lower", self.lower, mode=self.mode)
        eps_std = check_eps_std(self.eps_std)
        eps_clamp = check_clamp(self.eps_clamp)
        object.__setattr__(self, "upper", _short(upper))
        object.__setattr__(self, "lower", _short(lower))
        object.__setattr__(self, "eps_std", eps_std)
        object.__setattr__(self, "eps_clamp", eps_clamp)
        # Not fields (equality and to_dict read the fields), indexed by `upper` (False, True):
        # the families, and whether the clamp pass can change a value.
        object.__setattr__(self, "_families", (lower, upper))
        needs = (self._needs_clamp("lower", lower), self._needs_clamp("upper", upper))
        object.__setattr__(self, "_clamp_sides", needs)

    def _needs_clamp(self, side: str, family: ThresholdFamily) -> bool:
        if family.constant is not None:
            return False
        lo, hi = value_range(family, upper=side == "upper", mode=self.mode)
        if not family.clamped:
            if lo < 0.0:
                raise ValueError(
                    f"{side}: family {family.name!r} with clamp false goes negative on p in "
                    f"[0, 1] (down to {lo:.4g}); set clamp true or change its parameters"
                )
            return False
        # eps is monotone in p and p lies in [0, 1]: skip the clamp pass when the family's
        # range is inside eps_clamp (the result is identical).
        return not (self.eps_clamp[0] <= lo and hi <= self.eps_clamp[1])

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
        w_up = check_weight("w_up", w_up)
        w_low = check_weight("w_low", w_low)
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

    def _mix(self, p: Tensor, w: float, *, upper: bool, reuse: bool) -> Tensor:
        # The end points are returned as they are, so that w = 0 is exactly eps_std even where
        # p is NaN (e.g. garbage in padded positions) and w = 1 is exactly the family's value.
        std = self.std_eps(upper=upper)
        if w == 0.0:
            return torch.full_like(p, std)
        family = self.family(upper=upper)
        if family.constant is not None:
            return torch.full_like(p, w * family.constant + (1.0 - w) * std)
        # The family works in place (in p itself when reuse): no gradient is needed, and
        # every extra [B, T] temporary costs time and memory in the training step.
        dyn = family(p, upper=upper, mode=self.mode, reuse=reuse)
        if self._clamp_sides[upper]:  # type: ignore[attr-defined]
            dyn.clamp_(*self.eps_clamp)
        if w == 1.0:
            return dyn
        return dyn.mul_(w).add_((1.0 - w) * std)  # dyn is a fresh tensor of ours

    def family(self, *, upper: bool) -> ThresholdFamily:
        """The validated family of one side (``upper`` -> eps_high).

        >>> DynamicThresholds(upper=0.28).family(upper=True)
        FixedThreshold(eps=0.28)
        """
        return self._families[upper]  # type: ignore[attr-defined,no-any-return]

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
        """Plain, YAML/JSON-friendly dict that ``from_dict`` reads back: each side in its
        shortest form (a float for ``fixed``, ``[alpha, beta]`` for a clamped ``linear``, else
        ``{family: name, **parameters}``), other pairs as lists."""
        out: dict[str, Any] = {
            "upper": self.family(upper=True).to_plain(),
            "lower": self.family(upper=False).to_plain(),
        }
        for f in fields(self):
            if f.name not in out:
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

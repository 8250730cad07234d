"""Threshold families: one side's clip width eps as a function of a probability q in [0, 1].

:class:`~flexent.thresholds.DynamicThresholds` evaluates the family of each side (``upper`` ->
eps_high, ``lower`` -> eps_low) on q = pi_old (on the detached current probability in
``detached`` mode), clamps it to ``eps_clamp`` when the family's ``clamp`` is true, and mixes it
with ``eps_std`` by the strategies' weights (docs/method.md §4). The families
(docs/method.md §3, §5b):

- ``linear``: the paper's H(p) = alpha p + beta, in the three modes of docs/method.md §3;
- ``tv``: DPPO-Binary-TV's bound in ratio space, eps = delta / q;
- ``dcpo``: DCPO's closed-form ratio bounds, written as eps;
- ``fixed``: a constant (the fixed clip-higher / clip-lower ablation).

A family is a frozen dataclass whose fields are its parameters (the YAML keys next to
``family:``; ``None`` means "this side's default"), registered by name. Adding one is one class::

    @register_threshold_family("sqrt")
    @dataclass(frozen=True)
    class SqrtThreshold(ThresholdFamily):
        c: float | None = None
        clamp: bool = True

        def checked(self, key, *, upper, mode):
            return SqrtThreshold(check_positive(key("c"), 0.2 if self.c is None else self.c),
                                 check_bool(key("clamp"), self.clamp))

        def __call__(self, q, *, upper, mode, reuse):
            return (q.rsqrt_() if reuse else q.rsqrt()).mul_(self.c)   # eps = c / sqrt(q)

(``check_number``, ``check_positive``, ``check_eps`` and ``check_bool`` are importable from
this module.) The evaluation must be vectorised torch, monotone in q on [0, 1] (``DynamicThresholds`` reads
the range of a family off q = 0 and q = 1, to skip the clamp pass when it cannot act and to
refuse an unclamped family that goes negative), and, when ``reuse`` is true, work in q's own
buffer (the training step pays for every extra ``[B, T]`` temporary).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from flexent.thresholds._checks import check_bool, check_eps, check_number, check_positive

Key = Callable[[str], str]  # parameter name -> the key an error message names
F = TypeVar("F", bound="type[ThresholdFamily]")

THRESHOLD_FAMILIES: dict[str, type[ThresholdFamily]] = {}

# Defaults of each side (upper, lower).
LINEAR_UPPER = (-0.25, 0.5)  # docs/method.md §3: the upper bound is exactly 1.2 at p_old = 1
LINEAR_LOWER = (-0.13, 0.3)
TV_DELTA = 0.15  # verl examples/dppo_trainer/run_qwen30b_dppo.sh (both sides)
DCPO_EPS = (0.28, 0.2)  # lime-RL/DCPO recipes: clip_ratio_high, clip_ratio_low
DCPO_CLIP_RATIO_C = 10.0  # get_clip_low_high caps the upper ratio bound at max(C, 10)


def register_threshold_family(name: str) -> Callable[[F], F]:
    """Class decorator: register a :class:`ThresholdFamily` dataclass under ``name``."""

    def register(cls: F) -> F:
        if name in THRESHOLD_FAMILIES:
            raise ValueError(f"threshold family {name!r} is already registered")
        if not (dataclasses.is_dataclass(cls) and issubclass(cls, ThresholdFamily)):
            raise TypeError(f"{cls!r} must be a ThresholdFamily dataclass")
        cls.name = name
        THRESHOLD_FAMILIES[name] = cls
        return cls

    return register


@dataclass(frozen=True)
class ThresholdFamily:
    """Base of the families: parameters as dataclass fields, a ``clamp`` field when the clamp
    may act (probability-dependent families), and the methods below."""

    name: ClassVar[str] = ""

    def checked(self, key: Key, *, upper: bool, mode: str) -> ThresholdFamily:
        """This family with its side's defaults filled in and every parameter validated;
        ``ValueError`` names ``key(parameter)``."""
        raise NotImplementedError

    def __call__(self, q: Tensor, *, upper: bool, mode: str, reuse: bool) -> Tensor:
        """eps (unclamped) at probabilities ``q`` (any shape, no gradient); ``reuse``: q's
        buffer may be overwritten (and should be, to save a temporary)."""
        raise NotImplementedError

    @property
    def constant(self) -> float | None:
        """The value of a probability-independent family (mixed as a Python float), else None."""
        return None

    @property
    def clamped(self) -> bool:
        """Whether ``eps_clamp`` applies (the family's ``clamp`` field; False without one)."""
        return bool(getattr(self, "clamp", False))

    def to_plain(self) -> Any:
        """The YAML-plain form that :func:`parse_family` reads back."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"family": self.name, **{k: v for k, v in params.items() if v is not None}}


@register_threshold_family("linear")
@dataclass(frozen=True)
class LinearThreshold(ThresholdFamily):
    """docs/method.md §3: H(p) = alpha p + beta with alpha < 0. ``implicit`` (the paper's closed
    form, on pi_old): ``(1 + beta) / (1 - alpha q) - 1`` (upper), ``1 - (1 - beta) / (1 + alpha q)``
    (lower); ``old`` / ``detached``: ``alpha q + beta``. Defaults: (-0.25, 0.5) upper,
    (-0.13, 0.3) lower."""

    alpha: float | None = None
    beta: float | None = None
    clamp: bool = True

    def checked(self, key: Key, *, upper: bool, mode: str) -> LinearThreshold:
        d_alpha, d_beta = LINEAR_UPPER if upper else LINEAR_LOWER
        alpha = check_number(key("alpha"), d_alpha if self.alpha is None else self.alpha)
        beta = check_eps(key("beta"), d_beta if self.beta is None else self.beta, upper=upper)
        if alpha >= 0.0:
            raise ValueError(f"{key('alpha')} must be < 0 (a decreasing threshold), got {alpha!r}")
        if not upper and mode == "implicit" and 1.0 + alpha <= 0.0:
            # eps_low = 1 - (1 - beta) / (1 + alpha p) needs 1 + alpha p > 0 for all p in [0, 1].
            raise ValueError(f"{key('alpha')} must be > -1 in implicit mode, got {alpha!r}")
        return LinearThreshold(alpha, beta, check_bool(key("clamp"), self.clamp))

    def __call__(self, q: Tensor, *, upper: bool, mode: str, reuse: bool) -> Tensor:
        alpha, beta = self.alpha, self.beta
        assert alpha is not None and beta is not None, "call checked() first"
        # One multiply (into q itself when reuse), then in-place steps.
        slope = -alpha if (upper and mode == "implicit") else alpha
        eps = q.mul_(slope) if reuse else q * slope
        if mode != "implicit":
            return eps.add_(beta)  # alpha q + beta
        if upper:
            return eps.add_(1.0).reciprocal_().mul_(1.0 + beta).sub_(1.0)  # (1+b)/(1-a q) - 1
        return eps.add_(1.0).reciprocal_().mul_(beta - 1.0).add_(1.0)  # 1 - (1-b)/(1+a q)

    def to_plain(self) -> Any:
        # The historical form [alpha, beta] when it says everything (clamped).
        return [self.alpha, self.beta] if self.clamp else super().to_plain()


@register_threshold_family("tv")
@dataclass(frozen=True)
class TVThreshold(ThresholdFamily):
    """DPPO-Binary-TV (Qi et al. 2026, arXiv 2602.04879; verl ``dppo_tv``): a token with A > 0
    is kept while pi - q <= delta, one with A <= 0 while pi - q >= -delta, i.e.
    r <= 1 + delta / q and r >= 1 - delta / q: ``eps = delta / q`` on either side (the same in
    ``implicit`` and ``old`` mode). q -> 0 gives eps -> inf: no clip (on the lower side 1 - eps
    is negative from q < delta on). Default delta 0.15."""

    delta: float | None = None
    clamp: bool = True

    def checked(self, key: Key, *, upper: bool, mode: str) -> TVThreshold:
        delta = check_positive(key("delta"), TV_DELTA if self.delta is None else self.delta)
        return TVThreshold(delta, check_bool(key("clamp"), self.clamp))

    def __call__(self, q: Tensor, *, upper: bool, mode: str, reuse: bool) -> Tensor:
        assert self.delta is not None, "call checked() first"
        return (q.reciprocal_() if reuse else q.reciprocal()).mul_(self.delta)


@register_threshold_family("dcpo")
@dataclass(frozen=True)
class DCPOThreshold(ThresholdFamily):
    """DCPO (Yang et al. 2025, arXiv 2509.02333; lime-RL/DCPO ``get_clip_low_high`` in
    verl/trainer/ppo/core_algos.py). Ratio bounds on q = pi_old:

        high = min((1 + sqrt(1 + 4 eps / q)) / 2, max(clip_ratio_c, 10))  ->  eps_high = high - 1
        low  = (1 + sqrt(max(0, 1 - 4 eps / q))) / 2                      ->  eps_low  = 1 - low

    so eps_low lies in [0, 0.5] (0.5 for q <= 4 eps) and eps_high in (0, max(C, 10) - 1].
    Defaults eps 0.28 (upper) / 0.2 (lower), clip_ratio_c 10 (upper side only). At q = 0
    exactly DCPO's code sets low = 1 (eps_low 0); this uses the limit q -> 0+ (eps_low 0.5)."""

    eps: float | None = None
    clip_ratio_c: float | None = None
    clamp: bool = True

    def checked(self, key: Key, *, upper: bool, mode: str) -> DCPOThreshold:
        default = DCPO_EPS[0] if upper else DCPO_EPS[1]
        eps = check_positive(key("eps"), default if self.eps is None else self.eps)
        c = self.clip_ratio_c
        if not upper:
            if c is not None:
                raise ValueError(f"{key('clip_ratio_c')}: DCPO caps the upper bound only")
        else:
            c = check_number(key("clip_ratio_c"), DCPO_CLIP_RATIO_C if c is None else c)
            if c <= 1.0:
                raise ValueError(f"{key('clip_ratio_c')} must be > 1, got {c!r}")
        return DCPOThreshold(eps, c, check_bool(key("clamp"), self.clamp))

    def __call__(self, q: Tensor, *, upper: bool, mode: str, reuse: bool) -> Tensor:
        assert self.eps is not None, "call checked() first"
        inv = q.reciprocal_() if reuse else q.reciprocal()
        if upper:
            assert self.clip_ratio_c is not None, "call checked() first"
            cap = max(self.clip_ratio_c, 10.0) - 1.0
            # (1 + sqrt(1 + 4 eps / q)) / 2 - 1, at most max(C, 10) - 1
            return inv.mul_(4.0 * self.eps).add_(1.0).sqrt_().sub_(1.0).mul_(0.5).clamp_(max=cap)
        # 1 - (1 + sqrt(max(0, 1 - 4 eps / q))) / 2
        return inv.mul_(-4.0 * self.eps).add_(1.0).clamp_(min=0.0).sqrt_().mul_(-0.5).add_(0.5)


@register_threshold_family("fixed")
@dataclass(frozen=True)
class FixedThreshold(ThresholdFamily):
    """A constant eps (the ablation of docs/method.md §4: H(p) or M(p) replaced by a fixed
    clip-higher / clip-lower inside the same strategies). Never clamped; > 0 upper, in (0, 1)
    lower."""

    eps: float | None = None

    def checked(self, key: Key, *, upper: bool, mode: str) -> FixedThreshold:
        if self.eps is None:
            raise ValueError(f"{key('eps')} is required by family 'fixed'")
        return FixedThreshold(check_eps(key("eps"), self.eps, upper=upper))

    def __call__(self, q: Tensor, *, upper: bool, mode: str, reuse: bool) -> Tensor:
        assert self.eps is not None, "call checked() first"
        return q.fill_(self.eps) if reuse else torch.full_like(q, self.eps)

    @property
    def constant(self) -> float | None:
        return self.eps

    def to_plain(self) -> Any:
        return self.eps


def parse_family(side: str, value: Any, *, mode: str) -> ThresholdFamily:
    """The validated family of ``side`` (``"upper"`` | ``"lower"``) from any accepted form:
    a float (``fixed``), a pair ``[alpha, beta]`` (``linear``, clamped), a mapping
    ``{family: name, **parameters}``, or a :class:`ThresholdFamily`."""
    upper = side == "upper"
    key: Key = lambda param: f"{side}.{param}"  # noqa: E731
    if isinstance(value, ThresholdFamily):
        family = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        family, key = FixedThreshold(value), lambda param: side
    elif isinstance(value, Mapping):
        family = _from_mapping(side, value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        family = LinearThreshold(value[0], value[1])
        key = lambda param: f"{side}[{0 if param == 'alpha' else 1}] ({param})"  # noqa: E731
    else:
        raise ValueError(
            f"{side} must be a float or a pair (alpha, beta), or a mapping with a 'family' key "
            f"(one of {sorted(THRESHOLD_FAMILIES)}), got {value!r}"
        )
    return family.checked(key, upper=upper, mode=mode)


def _from_mapping(side: str, d: Mapping[Any, Any]) -> ThresholdFamily:
    valid = sorted(THRESHOLD_FAMILIES)
    if "family" not in d:
        raise ValueError(f"{side}: a mapping needs the key 'family' (one of {valid}), got {d!r}")
    name = d["family"]
    cls = THRESHOLD_FAMILIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{side}.family: unknown threshold family {name!r}; valid: {valid}")
    params = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in d if k != "family" and k not in params)
    if unknown:
        raise ValueError(
            f"{side}: unknown parameter(s) {unknown} of family {name!r}; valid: {params}"
        )
    return cls(**{k: v for k, v in d.items() if k != "family"})


def value_range(family: ThresholdFamily, *, upper: bool, mode: str) -> tuple[float, float]:
    """``(min, max)`` of the unclamped eps over q in [0, 1] (monotone: its values at 0 and 1),
    in float64 with the family's own formula (may be ``inf``)."""
    ends = family(torch.tensor([0.0, 1.0], dtype=torch.float64), upper=upper, mode=mode, reuse=True)
    a, b = ends.tolist()
    return min(a, b), max(a, b)

"""Validation of the thresholds' scalar parameters (internal): every error names the key."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor


def check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_open_unit(name: str, value: Any) -> float:
    value = check_number(name, value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    value = check_number(name, value)
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_eps(name: str, value: Any, *, upper: bool) -> float:
    """A clip width: in (0, 1) on the lower side (the bound 1 - eps must stay positive), any
    positive finite value on the upper side (1 + eps)."""
    return check_positive(name, value) if upper else check_open_unit(name, value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_eps_std(value: Any) -> float | tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"eps_std must be a float or a pair (low, high), got {value!r}")
        return (
            check_eps("eps_std[0] (low)", value[0], upper=False),
            check_eps("eps_std[1] (high)", value[1], upper=True),
        )
    return check_open_unit("eps_std", value)


def check_clamp(value: Any) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"eps_clamp must be a pair (eps_min, eps_max), got {value!r}")
    lo = check_open_unit("eps_clamp[0] (eps_min)", value[0])
    hi = check_eps("eps_clamp[1] (eps_max)", value[1], upper=True)
    if lo > hi:
        raise ValueError(f"eps_clamp must have eps_min <= eps_max, got {value!r}")
    return (lo, hi)


def check_weight(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        raise ValueError(f"{name} must be a Python float in [0, 1], got a tensor")
    value = check_number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return value

"""The adaptive entropy-bonus coefficient of Skywork-OR1 (arXiv 2505.22312; TRL's
``use_adaptive_entropy``): a bang-bang controller of ``entropy_coef`` toward a target entropy.

At each update k (:class:`flexent.control.StepController` makes one per rollout batch, as
Skywork-OR1's verl code does once per training step; the batch's later optimizer steps apply
``applied_k`` again), with H_k the batch's mean token entropy:

    applied_k = c_k      if H_k <= target, else 0          (the bonus only acts below target)
    c_{k+1}   = min(c_k + delta, c_max)   if H_k <= target
                max(c_k - delta, c_min)   otherwise

c_0 is ``entropy_coef``. It combines with any strategy (the adapters add the strategy's own
bonus, e.g. the ``target`` controller's cascade). Its state (c, steps) goes into checkpoints.

>>> a = AdaptiveEntropyCoef(coef=0.0, target=0.2, delta=0.005)
>>> [a.step(h) for h in (0.1, 0.1, 0.5, 0.1)]
[0.0, 0.005, 0.0, 0.005]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class AdaptiveEntropyCoef:
    """See the module docstring; ``coef`` is c_0 (``entropy_coef``)."""

    coef: float = 0.0
    target: float = 0.2
    delta: float = 0.005
    min: float = 0.0
    max: float = 1.0
    last_applied: float = 0.0

    def __post_init__(self) -> None:
        for name in ("coef", "target", "delta", "min", "max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"adaptive_entropy.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"adaptive_entropy.{name} must be finite and >= 0, got {value!r}")
        if self.min > self.max:
            raise ValueError(f"adaptive_entropy: min {self.min} > max {self.max}")
        if not self.min <= self.coef <= self.max:
            raise ValueError(
                f"adaptive_entropy: the initial coefficient (entropy_coef) {self.coef} must lie "
                f"in [min, max] = [{self.min}, {self.max}]"
            )

    def step(self, entropy: float) -> float:
        """The coefficient to apply at this step (then the update for the next one)."""
        below = entropy <= self.target
        self.last_applied = self.coef if below else 0.0
        if below:
            self.coef = min(self.coef + self.delta, self.max)
        else:
            self.coef = max(self.coef - self.delta, self.min)
        return self.last_applied

    def metrics(self) -> dict[str, float]:
        return {"control/adaptive_entropy_coef": self.last_applied}

    def state_dict(self) -> dict[str, Any]:
        return {"coef": self.coef, "last_applied": self.last_applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.coef, self.last_applied = float(state["coef"]), float(state["last_applied"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"adaptive entropy state {state!r}: {err}") from None

"""The peers' loss-weight entropy controllers on flexent's target trajectories: ``aepo`` and
``repo_r`` (EntroPIC is the ``target`` controller's ``entropic`` actuator).

Both follow a trajectory H*(k) chosen as for ``target`` (``target`` / ``points`` / ``preset``,
relative to H_init by default), keep the clip static (weights (0, 0)) and act through an
advantage shaping fixed once per step (:mod:`flexent.control.shaping`):

- ``aepo`` (AEPO, QwenLong-L1.5): a hysteresis gate. It opens when the step's entropy H_k rises
  above ``high * H*(k)`` and closes when H_k falls below ``low * H*(k)``; while open, every
  A < 0 token is dropped (negative samples raise entropy), so entropy can only be pushed down.
- ``repo_r`` (REPO-R, arXiv 2603.11682 App. D.2; SkyRL pull request 1896 at 57ec2a2,
  ``repo_r_update_zeta``): the advantage ``A (1 -/+ zeta log pi)`` with zeta adapted every
  step toward H*: below target zeta is doubled when > 0 (more weight on rare correct tokens,
  entropy up), halved when < 0, set to ``zeta_min`` when 0; above target the mirror image; a
  halving that takes |zeta| below ``zeta_min`` flips its sign at ``zeta_min``; |zeta| never
  exceeds ``zeta_max``. Defaults are the PR's (1e-3, [1e-4, 0.05]). zeta adapts once per
  rollout batch (a new entropy observation), however many optimizer steps train on it.
  Departure: SkyRL updates zeta after the step from the current policy's entropy in the
  training passes; flexent from the batch's rollout entropy before it, like every flexent
  controller.

AEPO's released code (Tongyi-Zhiwen/Qwen-Doc, QwenLong-L1.5 README) removes negative-advantage
sequences from the batch while the entropy lies between two marks, without published values;
flexent implements the hysteresis the QwenLong-L1.5 report describes, drops A < 0 tokens
(their loss and gradient become 0, they still count in a token-mean denominator) and puts the
marks relative to H*(k) (1.05 / 0.95, flexent's choice) so that the gate follows a trajectory.

>>> s = RepoR(total_steps=10, target=1.0, zeta=0.01, zeta_max=1.0)
>>> zetas = []
>>> for k, h in enumerate((1.0, 0.8, 0.8, 1.3)):  # H_init = 1.0; below, below, above target
...     _ = s.weights(k, entropy=h)
...     zetas.append(s.zeta)
>>> zetas
[0.01, 0.02, 0.04, 0.02]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from flexent.strategies.base import H_MIN_RATIO, OD_CYCLES, PHASE_RATIO, register_strategy
from flexent.strategies.target import TrackingStrategy


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


@register_strategy("aepo")
class AdaptiveNegativeGate(TrackingStrategy):
    """``aepo``: drop A < 0 tokens while the entropy is above ``high * H*`` until it falls below
    ``low * H*`` (module docstring). Trajectory parameters as ``target``; ``high`` > ``low``
    > 0 are multiples of H*(k)."""

    def __init__(
        self,
        total_steps: int,
        target: float | None = None,
        points: Sequence[Sequence[float]] | None = None,
        preset: str | None = None,
        relative: bool = True,
        h_init: float | None = None,
        phase_ratio: float = PHASE_RATIO,
        cycles: int = OD_CYCLES,
        h_min_ratio: float = H_MIN_RATIO,
        high: float = 1.05,
        low: float = 0.95,
    ) -> None:
        super().__init__(
            total_steps, h_init, target=target, points=points, preset=preset, relative=relative,
            phase_ratio=phase_ratio, cycles=cycles, h_min_ratio=h_min_ratio,
        )  # fmt: skip
        self.high, self.low = _positive("high", high), _positive("low", low)
        if self.low >= self.high:
            raise ValueError(f"aepo needs low < high, got low={low!r}, high={high!r}")
        self.gate = False

    def __repr__(self) -> str:
        return (f"AdaptiveNegativeGate(total_steps={self.total_steps}, {self._shape_repr()}, "
                f"high={self.high}, low={self.low})")  # fmt: skip

    def _update(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        target, _ = self._track(step, entropy, h_init)
        if entropy > self.high * target:
            self.gate = True
        elif entropy < self.low * target:
            self.gate = False
        self._last["control/gate"] = float(self.gate)
        return 0.0, 0.0

    @property
    def shapes_advantages(self) -> bool:
        return True

    def shaping(self) -> tuple[str, dict[str, float]] | None:
        return "aepo", {"gate": float(self.gate)}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["gate"] = self.gate
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "gate" not in state:
            raise ValueError("state_dict for 'aepo' lacks key 'gate'")
        self.gate = bool(state["gate"])


@register_strategy("repo_r")
class RepoR(TrackingStrategy):
    """``repo_r``: REPO-R's advantage rescaling with zeta adapted toward H* (module docstring).
    Trajectory parameters as ``target``; ``zeta`` the initial coefficient, ``zeta_min`` /
    ``zeta_max`` the bounds of |zeta|."""

    def __init__(
        self,
        total_steps: int,
        target: float | None = None,
        points: Sequence[Sequence[float]] | None = None,
        preset: str | None = None,
        relative: bool = True,
        h_init: float | None = None,
        phase_ratio: float = PHASE_RATIO,
        cycles: int = OD_CYCLES,
        h_min_ratio: float = H_MIN_RATIO,
        zeta: float = 1e-3,
        zeta_min: float = 1e-4,
        zeta_max: float = 0.05,
    ) -> None:
        super().__init__(
            total_steps, h_init, target=target, points=points, preset=preset, relative=relative,
            phase_ratio=phase_ratio, cycles=cycles, h_min_ratio=h_min_ratio,
        )  # fmt: skip
        self.zeta_min = _positive("zeta_min", zeta_min)
        self.zeta_max = _positive("zeta_max", zeta_max)
        zeta = float(zeta)
        if not abs(zeta) <= self.zeta_max or self.zeta_min > self.zeta_max:
            raise ValueError(
                f"need |zeta| <= zeta_max and zeta_min <= zeta_max, got zeta={zeta!r}, "
                f"zeta_min={zeta_min!r}, zeta_max={zeta_max!r}"
            )
        self.zeta = zeta

    def __repr__(self) -> str:
        return f"RepoR(total_steps={self.total_steps}, {self._shape_repr()}, zeta={self.zeta})"

    def _update(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        _, error = self._track(step, entropy, h_init)
        # the first step measures; each later new observation (one per rollout batch, as
        # SkyRL's once-per-iteration update) adapts zeta once
        if step > 0 and self.fresh and error != 0.0:
            self.zeta = adapt_zeta(self.zeta, up=error > 0.0, lo=self.zeta_min, hi=self.zeta_max)
        self._last["control/zeta"] = self.zeta
        return 0.0, 0.0

    @property
    def shapes_advantages(self) -> bool:
        return True

    def shaping(self) -> tuple[str, dict[str, float]] | None:
        return "repo_r", {"zeta": self.zeta}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["zeta"] = self.zeta
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "zeta" not in state:
            raise ValueError("state_dict for 'repo_r' lacks key 'zeta'")
        self.zeta = float(state["zeta"])


def adapt_zeta(zeta: float, *, up: bool, lo: float, hi: float) -> float:
    """One REPO-R update: move zeta up (entropy below target) or down by a factor of 2 in
    magnitude, flipping sign at ``lo``; |zeta| stays in [lo, hi].

    >>> adapt_zeta(0.01, up=True, lo=1e-3, hi=1.0), adapt_zeta(0.0015, up=False, lo=1e-3, hi=1.0)
    (0.02, -0.001)
    >>> adapt_zeta(0.0, up=True, lo=1e-3, hi=1.0), adapt_zeta(0.0, up=False, lo=1e-3, hi=1.0)
    (0.001, -0.001)
    """
    if zeta == 0.0:
        return lo if up else -lo
    grow = (zeta > 0) == up  # moving away from 0 in zeta's own direction
    if grow:
        return math.copysign(min(abs(zeta) * 2.0, hi), zeta)
    half = abs(zeta) / 2.0
    if half < lo:  # crossing 0: flip to the other side at the smallest magnitude
        return math.copysign(lo, -zeta)
    return math.copysign(half, zeta)

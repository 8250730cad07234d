"""Closed-loop ``target`` strategy (a project feature beyond the paper, METHOD §4).

A PI controller tracks a target entropy trajectory H*(k). With H_k the step's mean token
entropy and e_k = (H*(k) - H_k) / H_init (relative error, dimensionless):

    I_k = I_{k-1} + e_k   unless the output is saturated and e_k pushes it further (anti-windup)
    u_k = clip(kp e_k + ki I_k, -1, 1)
    u_k > 0 -> (w_up, w_low) = (u_k, 0)     relax the upper clip for low p: entropy up
    u_k < 0 -> (w_up, w_low) = (0, -u_k)    relax the lower clip for low p: entropy down

The trajectory is piecewise linear in training progress x = k / T through ``points``
``[(x, value), ...]`` (flat before the first and after the last point); values are multiples of
H_init when ``relative`` (default) and nats otherwise. ``target=v`` is the constant trajectory
and ``preset`` one of :data:`PRESETS`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flexent.strategies.base import FeedbackStrategy, check_ratio, register_strategy


@dataclass(frozen=True)
class TargetTrajectory:
    """Piecewise-linear target entropy H*(x) over training progress x = step / total_steps."""

    points: tuple[tuple[float, float], ...]
    relative: bool = True

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("target trajectory needs at least one (progress, value) point")
        xs = [x for x, _ in self.points]
        if any(not 0.0 <= x <= 1.0 for x in xs) or any(b <= a for a, b in itertools.pairwise(xs)):
            raise ValueError(f"target points need strictly increasing progress in [0, 1], got {xs}")
        for _, v in self.points:
            if not math.isfinite(v) or v < 0.0:
                raise ValueError(f"target values must be finite and >= 0, got {v!r}")

    def __call__(self, progress: float, h_init: float) -> float:
        """H* in nats at ``progress`` in [0, 1]."""
        pts = self.points
        if progress <= pts[0][0]:
            value = pts[0][1]
        elif progress >= pts[-1][0]:
            value = pts[-1][1]
        else:
            i = next(i for i in range(1, len(pts)) if progress <= pts[i][0])
            (x0, v0), (x1, v1) = pts[i - 1], pts[i]
            value = v0 + (v1 - v0) * (progress - x0) / (x1 - x0)
        return value * h_init if self.relative else value


def _preset_points(
    preset: str, phase_ratio: float, cycles: int, h_min_ratio: float
) -> list[tuple[float, float]]:
    rho = phase_ratio
    if preset == "id":  # up during phase I, then down
        return [(0.0, 1.0), (rho, 1.5), (1.0, 0.5)]
    if preset == "did":  # down, up (by the end of phase I), down
        return [(0.0, 1.0), (rho / 2, 0.6), (rho, 1.2), (1.0, 0.5)]
    if preset == "od":  # triangle wave between od's tau_high(x) envelope and H_min
        pts = []
        for i in range(cycles):
            x = i / cycles
            pts += [(x, h_min_ratio + (1 - h_min_ratio) * (1 - x)), (x + 0.5 / cycles, h_min_ratio)]
        return [*pts, (1.0, h_min_ratio)]
    raise ValueError(f"unknown target preset {preset!r}; valid presets: {', '.join(PRESETS)}")


PRESETS = ("id", "did", "od")


def make_trajectory(
    *,
    target: float | None = None,
    points: Sequence[Sequence[float]] | None = None,
    preset: str | None = None,
    relative: bool = True,
    phase_ratio: float = 0.5,
    cycles: int = 4,
    h_min_ratio: float = 0.2,
) -> TargetTrajectory:
    """Build a trajectory from exactly one of ``target``, ``points``, ``preset`` (default:
    ``target=1.0`` relative, i.e. hold the initial entropy). Presets are always relative.

    >>> make_trajectory(preset="id")(0.25, 2.0)
    2.5
    """
    given = [
        n for n, v in (("target", target), ("points", points), ("preset", preset)) if v is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give only one of target, points, preset; got {given}")
    if preset is not None:
        check_ratio("phase_ratio", phase_ratio)
        check_ratio("h_min_ratio", h_min_ratio)
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
            raise ValueError(f"cycles must be a positive int, got {cycles!r}")
        return TargetTrajectory(tuple(_preset_points(preset, phase_ratio, cycles, h_min_ratio)))
    if points is not None:
        try:
            pts = tuple((float(x), float(v)) for x, v in points)
        except (TypeError, ValueError):
            raise ValueError(
                f"points must be a list of (progress, value) pairs, got {points!r}"
            ) from None
        return TargetTrajectory(pts, relative)
    return TargetTrajectory(((0.0, 1.0 if target is None else float(target)),), relative)


def pi_step(error: float, integral: float, *, kp: float, ki: float) -> tuple[float, float]:
    """One PI update with anti-windup by conditional integration: ``(u, new_integral)``.

    The error is integrated unless that would drive an already saturated output further
    past its limit, so the integral never winds up beyond what u in [-1, 1] can use.

    >>> pi_step(0.1, 0.0, kp=2.0, ki=0.5)
    (0.25, 0.1)
    >>> pi_step(0.8, 0.0, kp=2.0, ki=0.5)  # saturated: integral not updated
    (1.0, 0.0)
    """
    candidate = integral + error
    raw = kp * error + ki * candidate
    if abs(raw) > 1.0 and raw * error > 0.0:
        candidate = integral
    u = kp * error + ki * candidate
    return max(-1.0, min(1.0, u)), candidate


def _check_gain(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


@register_strategy("target")
class TargetEntropy(FeedbackStrategy):
    """``target``: PI control of the entropy towards a trajectory; see the module docstring.

    Parameters: ``target`` / ``points`` / ``preset`` (+ ``relative``, ``phase_ratio``,
    ``cycles``, ``h_min_ratio`` for presets) choose H*; ``kp``, ``ki`` are the gains;
    ``h_init`` the reference entropy in nats (measured at the first step when None).
    """

    def __init__(
        self,
        total_steps: int,
        target: float | None = None,
        points: Sequence[Sequence[float]] | None = None,
        preset: str | None = None,
        relative: bool = True,
        kp: float = 2.0,
        ki: float = 0.3,
        h_init: float | None = None,
        phase_ratio: float = 0.5,
        cycles: int = 4,
        h_min_ratio: float = 0.2,
    ) -> None:
        super().__init__(total_steps, h_init)
        self.trajectory = make_trajectory(
            target=target, points=points, preset=preset, relative=relative,
            phase_ratio=phase_ratio, cycles=cycles, h_min_ratio=h_min_ratio,
        )  # fmt: skip
        self.preset = preset
        self.kp, self.ki = _check_gain("kp", kp), _check_gain("ki", ki)
        if self.kp == 0.0 and self.ki == 0.0:
            raise ValueError("kp and ki are both 0: the controller would never act")
        self.integral = 0.0
        self.abs_error_sum = 0.0
        self.n_observed = 0

    def __repr__(self) -> str:
        shape = (
            f"preset={self.preset!r}" if self.preset else f"points={list(self.trajectory.points)}"
        )
        return f"TargetEntropy(total_steps={self.total_steps}, {shape}, kp={self.kp}, ki={self.ki})"

    def target_at(self, step: int) -> float:
        """H*(step) in nats (needs ``h_init``, measured at the first :meth:`weights` call)."""
        if self.h_init is None:
            raise ValueError("h_init is not known yet: pass h_init= or call weights() first")
        return self.trajectory(self._check_step(step) / self.total_steps, self.h_init)

    @property
    def tracking_error(self) -> float:
        """Mean |H_k - H*(k)| / H_init over the steps observed so far (0 before any)."""
        return self.abs_error_sum / self.n_observed if self.n_observed else 0.0

    def _update(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        target = self.trajectory(step / self.total_steps, h_init)
        error = (target - entropy) / h_init
        u, self.integral = pi_step(error, self.integral, kp=self.kp, ki=self.ki)
        self.abs_error_sum += abs(error)
        self.n_observed += 1
        self._last.update(
            {"control/target": target, "control/error": error, "control/u": u,
             "control/tracking_error": self.tracking_error}
        )  # fmt: skip
        return (u, 0.0) if u >= 0.0 else (0.0, -u)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(integral=self.integral, abs_error_sum=self.abs_error_sum,
                     n_observed=self.n_observed)  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        try:
            self.integral = float(state["integral"])
            self.abs_error_sum = float(state["abs_error_sum"])
            self.n_observed = int(state["n_observed"])
        except KeyError as err:
            raise ValueError(f"state_dict for 'target' lacks key {err.args[0]!r}") from None

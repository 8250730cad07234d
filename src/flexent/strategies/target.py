"""Closed-loop ``target`` strategy (a project feature beyond the paper, docs/method.md §4).

A PI controller tracks a target entropy trajectory H*(k). With H_k the step's mean token
entropy and e_k = (H*(k) - H_k) / H_init (relative error, dimensionless):

    I_k = I_{k-1} + e_k   unless the output is saturated and e_k pushes it further (anti-windup)
    u_k = clip(kp e_k + ki I_k, -U, U)

The ``actuator`` turns u into the strategy's outputs:

- ``clip`` (default, U = 1): u > 0 -> (w_up, w_low) = (u, 0), relax the upper clip for low p
  (entropy up); u < 0 -> (0, -u), relax the lower clip for low p (entropy down).
- ``cascade`` (U = 2, beyond the paper): the clip weights as above on the first unit of u; when
  they saturate (|u| > 1) the rest drives an entropy-bonus coefficient
  ``c = bonus_max * sign(u) (|u| - 1)`` (a penalty when negative). One integrator with
  anti-windup at U covers both actuators.
- ``bonus`` (U = 1): the clip stays static, (0, 0); ``c = bonus_max * u``.
- ``entropic`` (U = 1, EntroPIC's actuator, arXiv 2511.15248): the clip stays static; u sets
  the loss weight of high-probability tokens (p > ``p_high``, 0.95 as EntroPIC's code):
  ``1 - u`` when A > 0 (they lower entropy), ``1 + u`` when A < 0 (they raise it); applied as
  an advantage shaping (:mod:`flexent.control.shaping`, which states the departures). EntroPIC's
  own gains are kp 1, ki 0.01 on an error in nats (flexent's error is relative to H_init); it
  measures the entropy on each training mini-batch, weights the integrated error by the
  mini-batch's share, computes alpha before integrating the current error and has no
  anti-windup; flexent's controller uses the step's rollout entropy once per step with
  :func:`pi_step`.

The adapters add :meth:`TargetEntropy.bonus_coef` to ``entropy_coef`` at every step and apply
:meth:`TargetEntropy.shaping` to the advantages (TRL; verl with flexent's ``flexent_sync``
driver, which ships both to the workers' loss).

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

from flexent.strategies.base import (
    H_MIN_RATIO,
    OD_CYCLES,
    PHASE_RATIO,
    FeedbackStrategy,
    check_ratio,
    register_strategy,
)


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
    phase_ratio: float = PHASE_RATIO,
    cycles: int = OD_CYCLES,
    h_min_ratio: float = H_MIN_RATIO,
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


def pi_step(
    error: float, integral: float, *, kp: float, ki: float, limit: float = 1.0
) -> tuple[float, float]:
    """One PI update with anti-windup by conditional integration: ``(u, new_integral)``.

    The error is integrated unless that would drive an already saturated output further
    past its limit, so the integral never winds up beyond what u in [-limit, limit] can use.

    >>> pi_step(0.1, 0.0, kp=2.0, ki=0.5)
    (0.25, 0.1)
    >>> pi_step(0.8, 0.0, kp=2.0, ki=0.5)  # saturated: integral not updated
    (1.0, 0.0)
    >>> pi_step(0.8, 0.0, kp=2.0, ki=0.5, limit=2.0)  # a second actuator: room up to 2
    (2.0, 0.8)
    """
    candidate = integral + error
    raw = kp * error + ki * candidate
    if abs(raw) > limit and raw * error > 0.0:
        candidate = integral
    u = kp * error + ki * candidate
    return max(-limit, min(limit, u)), candidate


ACTUATORS = ("clip", "cascade", "bonus", "entropic")
# EntroPIC's high-probability cut: its controller reweights tokens sampled with p above this
P_HIGH = 0.95


def actuate(u: float, actuator: str, bonus_max: float) -> tuple[float, float, float]:
    """``(w_up, w_low, entropy_coef)`` for controller output ``u`` (module docstring).

    >>> actuate(0.5, "clip", 0.0), actuate(-1.5, "cascade", 0.01), actuate(0.5, "bonus", 0.01)
    ((0.5, 0.0, 0.0), (0.0, 1.0, -0.005), (0.0, 0.0, 0.005))
    """
    if actuator == "bonus":
        return 0.0, 0.0, bonus_max * u
    if actuator == "entropic":  # u drives the advantage shaping, not the clip or a bonus
        return 0.0, 0.0, 0.0
    clip_part = max(-1.0, min(1.0, u))
    excess = u - clip_part  # nonzero only in cascade (|u| > 1)
    w_up, w_low = (clip_part, 0.0) if clip_part >= 0.0 else (0.0, -clip_part)
    return w_up, w_low, bonus_max * excess


def _check_gain(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class TrackingStrategy(FeedbackStrategy):
    """A feedback strategy that follows a target trajectory H*(k) (``target`` / ``points`` /
    ``preset``, as :func:`make_trajectory`); it keeps the mean tracking error and logs
    ``control/target``, ``control/error`` (= (H* - H) / H_init) and ``control/tracking_error``.
    Subclasses (``target``, ``aepo``, ``repo_r``) turn the error into their outputs."""

    def __init__(
        self,
        total_steps: int,
        h_init: float | None,
        *,
        target: float | None,
        points: Sequence[Sequence[float]] | None,
        preset: str | None,
        relative: bool,
        phase_ratio: float,
        cycles: int,
        h_min_ratio: float,
    ) -> None:
        super().__init__(total_steps, h_init)
        self.trajectory = make_trajectory(
            target=target, points=points, preset=preset, relative=relative,
            phase_ratio=phase_ratio, cycles=cycles, h_min_ratio=h_min_ratio,
        )  # fmt: skip
        self.preset = preset
        self.abs_error_sum = 0.0
        self.n_observed = 0

    def _shape_repr(self) -> str:
        return (
            f"preset={self.preset!r}" if self.preset else f"points={list(self.trajectory.points)}"
        )

    def target_at(self, step: int) -> float:
        """H*(step) in nats (needs ``h_init``, measured at the first :meth:`weights` call)."""
        if self.h_init is None:
            raise ValueError("h_init is not known yet: pass h_init= or call weights() first")
        return self.trajectory(self._check_step(step) / self.total_steps, self.h_init)

    @property
    def tracking_error(self) -> float:
        """Mean |H_k - H*(k)| / H_init over the steps observed so far (0 before any)."""
        return self.abs_error_sum / self.n_observed if self.n_observed else 0.0

    def _track(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        """``(H*(k), e_k)`` of this step, counted in the tracking error and logged."""
        target = self.trajectory(step / self.total_steps, h_init)
        error = (target - entropy) / h_init
        self.abs_error_sum += abs(error)
        self.n_observed += 1
        self._last.update({"control/target": target, "control/error": error,
                           "control/tracking_error": self.tracking_error})  # fmt: skip
        return target, error

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(abs_error_sum=self.abs_error_sum, n_observed=self.n_observed)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        try:
            self.abs_error_sum = float(state["abs_error_sum"])
            self.n_observed = int(state["n_observed"])
        except KeyError as err:
            raise ValueError(f"state_dict for {self.name!r} lacks key {err.args[0]!r}") from None


@register_strategy("target")
class TargetEntropy(TrackingStrategy):
    """``target``: PI control of the entropy towards a trajectory; see the module docstring.

    Parameters: ``target`` / ``points`` / ``preset`` (+ ``relative``, ``phase_ratio``,
    ``cycles``, ``h_min_ratio`` for presets) choose H*; ``kp``, ``ki`` are the gains;
    ``h_init`` the reference entropy in nats (measured at the first step when None);
    ``actuator`` (``clip``, ``cascade``, ``bonus``, ``entropic``) and ``bonus_max`` (the
    entropy-bonus coefficient at full output, > 0 for ``cascade`` / ``bonus``) choose what u
    drives; ``p_high`` is ``entropic``'s probability cut.
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
        phase_ratio: float = PHASE_RATIO,
        cycles: int = OD_CYCLES,
        h_min_ratio: float = H_MIN_RATIO,
        actuator: str = "clip",
        bonus_max: float = 0.0,
        p_high: float | None = None,
    ) -> None:
        super().__init__(
            total_steps, h_init, target=target, points=points, preset=preset, relative=relative,
            phase_ratio=phase_ratio, cycles=cycles, h_min_ratio=h_min_ratio,
        )  # fmt: skip
        if actuator not in ACTUATORS:
            raise ValueError(f"actuator must be one of {list(ACTUATORS)}, got {actuator!r}")
        self.actuator, self.bonus_max = actuator, _check_gain("bonus_max", bonus_max)
        if (actuator in ("cascade", "bonus")) != (self.bonus_max > 0.0):
            raise ValueError(
                f"bonus_max must be > 0 with actuator 'cascade' / 'bonus' and 0 otherwise, got "
                f"{bonus_max!r} with {actuator!r}"
            )
        if p_high is not None and actuator != "entropic":
            raise ValueError(f"p_high is the 'entropic' actuator's; actuator is {actuator!r}")
        self.p_high = P_HIGH if p_high is None else check_ratio("p_high", p_high)
        self._u = 0.0
        self._coef = 0.0
        self.kp, self.ki = _check_gain("kp", kp), _check_gain("ki", ki)
        if self.kp == 0.0 and self.ki == 0.0:
            raise ValueError("kp and ki are both 0: the controller would never act")
        self.integral = 0.0

    def __repr__(self) -> str:
        shape = self._shape_repr()
        act = {"clip": "", "entropic": f", entropic, p_high={self.p_high}"}.get(
            self.actuator, f", {self.actuator}, bonus_max={self.bonus_max}"
        )
        return f"TargetEntropy(total_steps={self.total_steps}, {shape}, kp={self.kp}, ki={self.ki}{act})"

    def _update(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        _, error = self._track(step, entropy, h_init)
        limit = 2.0 if self.actuator == "cascade" else 1.0
        u, self.integral = pi_step(error, self.integral, kp=self.kp, ki=self.ki, limit=limit)
        self._u = u
        w_up, w_low, self._coef = actuate(u, self.actuator, self.bonus_max)
        self._last["control/u"] = u
        if self.actuator in ("cascade", "bonus"):
            self._last["control/entropy_coef"] = self._coef
        if self.actuator == "entropic":
            self._last["control/alpha"] = u
        return w_up, w_low

    @property
    def uses_bonus(self) -> bool:
        return self.actuator in ("cascade", "bonus")

    @property
    def shapes_advantages(self) -> bool:
        return self.actuator == "entropic"

    def shaping(self) -> tuple[str, dict[str, float]] | None:
        """EntroPIC's ``("entropic", {alpha, p_high})`` of the last step (None otherwise)."""
        if self.actuator != "entropic":
            return None
        return "entropic", {"alpha": self._u, "p_high": self.p_high}

    def bonus_coef(self) -> float:
        """The entropy-bonus coefficient of the last step (0 with ``actuator: clip``)."""
        return self._coef

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(integral=self.integral, coef=self._coef, u=self._u)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        try:
            self.integral = float(state["integral"])
            self._coef = float(state.get("coef", 0.0))
            self._u = float(state.get("u", 0.0))
        except KeyError as err:
            raise ValueError(f"state_dict for 'target' lacks key {err.args[0]!r}") from None

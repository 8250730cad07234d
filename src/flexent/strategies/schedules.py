"""Open-loop strategies: pure functions of (step, total_steps, phase_ratio).

docs/method.md §4: with T = total_steps and rho = phase_ratio, the phase signal is

    lambda_k = 1 - k / (rho T)               for k <= rho T   (phase I, 1 -> 0)
    lambda_k = -(k - rho T) / ((1 - rho) T)  for k >  rho T   (phase II, 0 -> -1)

(for rho = 0.5 this is the paper's lambda_k = 1 - 2k/T), and

    id:   phase I (w_up, w_low) = (lambda_k, 0),      phase II = (0, 1 + lambda_k)
    did:  phase I (w_up, w_low) = (1 - lambda_k, 0),  phase II = (1, 1 + lambda_k)
"""

from __future__ import annotations

from flexent.strategies.base import (
    PHASE_RATIO,
    Strategy,
    check_ratio,
    check_total_steps,
    register_strategy,
)


def _check(step: int, total_steps: int, phase_ratio: float) -> float:
    check_total_steps(total_steps)
    rho = check_ratio("phase_ratio", phase_ratio)
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    return rho


def _boundary(total_steps: int, rho: float) -> float:
    # rho * T in binary floating point can be one ulp off (0.3 * 10 = 3.0000000000000004);
    # rounding keeps the landmark steps exact (lambda = 0 at k = rho T).
    return round(rho * total_steps, 9)


def phase_lambda(step: int, total_steps: int, phase_ratio: float = PHASE_RATIO) -> float:
    """The phase signal lambda_k in [-1, 1] (docs/method.md §4).

    >>> phase_lambda(0, 400), phase_lambda(100, 400), phase_lambda(200, 400), phase_lambda(400, 400)
    (1.0, 0.5, 0.0, -1.0)
    """
    rho = _check(step, total_steps, phase_ratio)
    boundary = _boundary(total_steps, rho)
    if step <= boundary:
        return 1.0 - step / boundary
    return -(step - boundary) / ((1.0 - rho) * total_steps)


def in_phase_one(step: int, total_steps: int, phase_ratio: float = PHASE_RATIO) -> bool:
    """True while ``step <= phase_ratio * total_steps``."""
    rho = _check(step, total_steps, phase_ratio)
    return step <= _boundary(total_steps, rho)


def id_weights(
    step: int, total_steps: int, phase_ratio: float = PHASE_RATIO
) -> tuple[float, float]:
    """Increase-then-decrease: ``(w_up, w_low)`` at ``step``.

    >>> id_weights(100, 400), id_weights(300, 400)
    ((0.5, 0.0), (0.0, 0.5))
    """
    lam = phase_lambda(step, total_steps, phase_ratio)
    if in_phase_one(step, total_steps, phase_ratio):
        return lam, 0.0
    return 0.0, 1.0 + lam


def did_weights(
    step: int, total_steps: int, phase_ratio: float = PHASE_RATIO
) -> tuple[float, float]:
    """Decrease-increase-decrease: ``(w_up, w_low)`` at ``step``.

    >>> did_weights(100, 400), did_weights(300, 400)
    ((0.5, 0.0), (1.0, 0.5))
    """
    lam = phase_lambda(step, total_steps, phase_ratio)
    if in_phase_one(step, total_steps, phase_ratio):
        return 1.0 - lam, 0.0
    return 1.0, 1.0 + lam


@register_strategy("static")
class Static(Strategy):
    """GRPO clip: both thresholds stay at ``eps_std``, ``(w_up, w_low) = (0, 0)``."""

    step_free = True
    always_std = True

    def _weights(self, step: int, entropy: float | None) -> tuple[float, float]:
        return 0.0, 0.0


@register_strategy("dynamic")
class Dynamic(Strategy):
    """Dynamic thresholds H(p), M(p) at every step, ``(w_up, w_low) = (1, 1)``."""

    step_free = True

    def _weights(self, step: int, entropy: float | None) -> tuple[float, float]:
        return 1.0, 1.0


class _Phased(Strategy):
    def __init__(self, total_steps: int, phase_ratio: float = PHASE_RATIO) -> None:
        super().__init__(total_steps)
        self.phase_ratio = check_ratio("phase_ratio", phase_ratio)

    def _weights(self, step: int, entropy: float | None) -> tuple[float, float]:
        self._last["control/lambda"] = phase_lambda(step, self.total_steps, self.phase_ratio)
        return self._pure(step, self.total_steps, self.phase_ratio)

    @staticmethod
    def _pure(step: int, total_steps: int, phase_ratio: float) -> tuple[float, float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(total_steps={self.total_steps}, phase_ratio={self.phase_ratio})"
        )


@register_strategy("id")
class IncreaseDecrease(_Phased):
    """``id``: entropy up in phase I (w_up 1 -> 0), down in phase II (w_low 1 -> 0)."""

    _pure = staticmethod(id_weights)


@register_strategy("did")
class DecreaseIncreaseDecrease(_Phased):
    """``did``: w_up 0 -> 1 in phase I, then w_up = 1 while w_low goes 1 -> 0."""

    _pure = staticmethod(did_weights)

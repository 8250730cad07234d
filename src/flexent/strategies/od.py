"""Oscillatory decay (``od``): a hysteresis switch between boosting and suppressing entropy.

docs/method.md §4. H_min = h_min_ratio * H_init, tau_low = H_min,
tau_high(k) = H_min + (H_init - H_min)(1 - k/T). With H_k the step's mean token entropy:

    s_k = 1        if H_k <= tau_low         (boost:    (w_up, w_low) = (1, 0))
    s_k = 0        if H_k >  tau_high(k)     (suppress: (w_up, w_low) = (0, 1))
    s_k = s_{k-1}  otherwise                 (hysteresis)

The switch's memory starts at 0 (suppress). With H_init measured at step 0 (the default),
H_0 = H_init = tau_high(0) is neither above tau_high nor below tau_low, so s_0 = 0 exactly as
the paper states; with an explicit ``h_init`` the rule above also applies at step 0.
"""

from __future__ import annotations

from typing import Any

from flexent.strategies.base import H_MIN_RATIO, FeedbackStrategy, check_ratio, register_strategy


def od_thresholds(
    step: int, total_steps: int, h_init: float, h_min_ratio: float = H_MIN_RATIO
) -> tuple[float, float]:
    """``(tau_low, tau_high(k))`` in nats.

    >>> od_thresholds(0, 100, 2.5), od_thresholds(50, 100, 2.5), od_thresholds(100, 100, 2.5)
    ((0.5, 2.5), (0.5, 1.5), (0.5, 0.5))
    """
    h_min = h_min_ratio * h_init
    return h_min, h_min + (h_init - h_min) * (1.0 - step / total_steps)


def od_next_state(entropy: float, prev_state: int, tau_low: float, tau_high: float) -> int:
    """The hysteresis rule: 1 = boost entropy, 0 = suppress it.

    >>> od_next_state(0.3, 0, 0.4, 2.0), od_next_state(1.0, 1, 0.4, 2.0), od_next_state(2.5, 1, 0.4, 2.0)
    (1, 1, 0)
    """
    if entropy <= tau_low:
        return 1
    if entropy > tau_high:
        return 0
    return prev_state


@register_strategy("od")
class OscillatoryDecay(FeedbackStrategy):
    """``od``: hysteresis on the observed entropy; see the module docstring."""

    def __init__(
        self, total_steps: int, h_min_ratio: float = H_MIN_RATIO, h_init: float | None = None
    ) -> None:
        super().__init__(total_steps, h_init)
        self.h_min_ratio = check_ratio("h_min_ratio", h_min_ratio)
        self.state = 0

    def _update(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        tau_low, tau_high = od_thresholds(step, self.total_steps, h_init, self.h_min_ratio)
        self.state = od_next_state(entropy, self.state, tau_low, tau_high)
        self._last.update(
            {"control/state": float(self.state), "control/tau_low": tau_low,
             "control/tau_high": tau_high}
        )  # fmt: skip
        return (1.0, 0.0) if self.state == 1 else (0.0, 1.0)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["s"] = self.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("s") not in (0, 1):
            raise ValueError(f"state_dict for 'od' needs s in {{0, 1}}, got {state.get('s')!r}")
        self.state = int(state["s"])

    def __repr__(self) -> str:
        return (
            f"OscillatoryDecay(total_steps={self.total_steps}, h_min_ratio={self.h_min_ratio}, "
            f"h_init={self.h_init_config})"
        )

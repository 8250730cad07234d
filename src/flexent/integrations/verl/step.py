"""verl's step counter and batch fields <-> flexent's engine-neutral step layer (no verl import).

verl counts ``global_steps`` from 1; flexent counts optimizer steps k from 0 (docs/method.md §4:
lambda_k = 1 - 2k/T starts at 1), so k = global_steps - 1 and a run of T verl steps covers
k = 0 .. T-1. The driver (``flexent_sync``) holds one :class:`~flexent.control.StepController`:
it observes the mean token entropy of each step's rollouts (pi_old's per-token entropy averaged
over the update batch's response tokens; with ``parameter_sync_step > 1`` the first sub-batch's
value counts), fixes the step's weights and bonus at the first actor update of the step, and
ships them to the workers as the update batch's non-tensor data (:func:`step_data`), with the
strategy's advantage shaping when it has one (the loss-weight controllers).

>>> from flexent.control import EntropyControl
>>> c = step_controller(EntropyControl(strategy="id"), total_steps=4)
>>> step_data(c, 1)              # k = 0: lambda = 1
{'flexent_step': 0, 'flexent_w_up': 1.0, 'flexent_w_low': 0.0, 'flexent_entropy_coef': 0.0}
>>> step_data(c, 4)["flexent_w_low"]   # k = 3: lambda = -(3 - 2) / 2
0.5
"""

from __future__ import annotations

import json
from typing import Any

from flexent.control import EntropyControl, StepController

RUNTIME_KEYS = ("flexent_step", "flexent_w_up", "flexent_w_low")
BONUS_KEY = "flexent_entropy_coef"  # the step's entropy-bonus coefficient (0 when absent)
# the step's advantage shaping as JSON [kind, params] (absent when the strategy does not shape)
SHAPING_KEY = "flexent_shaping"
MISSING_ENTROPY_HINT = (
    "verl skips the old-log-prob pass in algorithm.rollout_correction.bypass_mode; disable it "
    "for this setting"
)


def step_controller(control: EntropyControl, *, total_steps: int) -> StepController:
    """The driver's controller for a verl run of ``total_steps`` steps."""
    return StepController(
        control, total_steps=total_steps, missing_entropy_hint=MISSING_ENTROPY_HINT
    )


def observe_entropy(controller: StepController, global_steps: int, entropy: float) -> None:
    """Record verl step ``global_steps``'s rollout entropy (the first value of a step counts)."""
    controller.observe_entropy(entropy, step=_k(global_steps))


def step_data(controller: StepController, global_steps: int) -> dict[str, Any]:
    """The non-tensor data of verl step ``global_steps``'s update batch: the step k, the
    weights and the entropy-bonus coefficient (fixed once per step)."""
    k = _k(global_steps)
    controller.begin_step(k)
    w_up, w_low = controller.weights
    out: dict[str, Any] = {
        "flexent_step": k,
        "flexent_w_up": w_up,
        "flexent_w_low": w_low,
        BONUS_KEY: controller.entropy_coef,
    }
    if controller.shaping is not None:
        out[SHAPING_KEY] = json.dumps(list(controller.shaping))
    return out


def read_shaping(value: Any) -> tuple[str, dict[str, float]] | None:
    """The shaping :func:`step_data` shipped (None when absent).

    >>> read_shaping('["aepo", {"gate": 1.0}]')
    ('aepo', {'gate': 1.0})
    """
    if value is None:
        return None
    kind, params = json.loads(value)
    return str(kind), {str(k): float(v) for k, v in params.items()}


def step_metrics(controller: StepController) -> dict[str, float]:
    """The held step's ``control/*`` values under verl's ``actor/`` namespace."""
    return {f"actor/{k}": v for k, v in controller.metrics().items()}


def _k(global_steps: int) -> int:
    if int(global_steps) < 1:
        raise ValueError(f"verl global_steps starts at 1, got {global_steps}")
    return int(global_steps) - 1

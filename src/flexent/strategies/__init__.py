"""Entropy-control strategies: per training step, the mixing weights ``(w_up, w_low)``.

Each strategy says how strongly the probability-dependent thresholds of
:class:`flexent.thresholds.DynamicThresholds` act at step k (docs/method.md §4):

    eps_high = w_up * H(p) + (1 - w_up) * eps_std
    eps_low  = w_low * M(p) + (1 - w_low) * eps_std

Registered names: ``static``, ``dynamic``, ``id``, ``did``, ``od``, ``target``, and the
peers' loss-weight controllers ``aepo`` and ``repo_r`` (see docs/strategies.md). Open-loop ones are pure functions of (step, total_steps, params),
also exposed as :func:`id_weights` and :func:`did_weights`; ``od`` and ``target`` observe the
step's mean token entropy and keep state for checkpoints.

The paper's fixed clip-higher / clip-lower ablation is configuration, not a strategy: build the
thresholds with a float, ``DynamicThresholds(upper=0.28)`` (and/or ``lower=0.28``), and the same
strategy then mixes that fixed eps with eps_std instead of H(p) / M(p).

>>> s = get_strategy("did", total_steps=10, phase_ratio=0.3)
>>> [s.weights(k) for k in (0, 3, 10)]
[(0.0, 0.0), (1.0, 0.0), (1.0, 0.0)]
"""

from flexent.strategies.base import (
    FeedbackStrategy,
    Strategy,
    check_strategy_params,
    get_strategy,
    list_strategies,
    register_strategy,
    strategy_class,
    strategy_param_names,
)
from flexent.strategies.loss_weight import AdaptiveNegativeGate, RepoR, adapt_zeta
from flexent.strategies.od import OscillatoryDecay, od_next_state, od_thresholds
from flexent.strategies.schedules import (
    DecreaseIncreaseDecrease,
    Dynamic,
    IncreaseDecrease,
    Static,
    did_weights,
    id_weights,
    in_phase_one,
    phase_lambda,
)
from flexent.strategies.target import (
    PRESETS,
    TargetEntropy,
    TargetTrajectory,
    TrackingStrategy,
    make_trajectory,
    pi_step,
)

__all__ = [
    "PRESETS",
    "AdaptiveNegativeGate",
    "DecreaseIncreaseDecrease",
    "Dynamic",
    "FeedbackStrategy",
    "IncreaseDecrease",
    "OscillatoryDecay",
    "RepoR",
    "Static",
    "Strategy",
    "TargetEntropy",
    "TargetTrajectory",
    "TrackingStrategy",
    "adapt_zeta",
    "check_strategy_params",
    "did_weights",
    "get_strategy",
    "id_weights",
    "in_phase_one",
    "list_strategies",
    "make_trajectory",
    "od_next_state",
    "od_thresholds",
    "phase_lambda",
    "pi_step",
    "register_strategy",
    "strategy_class",
    "strategy_param_names",
]

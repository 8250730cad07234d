"""What flexent changes in a policy update, engine-neutral: :class:`EntropyControl`.

One dataclass holds every entropy-control setting (strategy and its parameters, thresholds,
loss and its parameters, diagnostics, what to do when clipping is inert, entropy bonus) and
validates all of them at construction, so a mistake is reported before any model loads. The
TRL adapter takes it as is; ``flexent train``'s config section ``entropy_control`` and verl's
``FlexentPolicyLossConfig`` have the same keys, with the defaults taken from here.

>>> c = EntropyControl(strategy="id", strategy_params={"phase_ratio": 0.4})
>>> c.build_strategy(total_steps=10).weights(2)
(0.5, 0.0)
>>> EntropyControl(loss="ppo_clip", loss_params={"beta1": 0.5})
Traceback (most recent call last):
...
ValueError: loss_params: policy loss 'ppo_clip' got unknown parameters ['beta1']; it accepts ['clip_c']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flexent.advantages import check_advantage
from flexent.diagnostics import SCHEMES
from flexent.losses import check_loss_params, get_policy_loss, loss_traits
from flexent.strategies import Strategy, check_strategy_params, get_strategy, strategy_class
from flexent.strategies.adaptive import AdaptiveEntropyCoef
from flexent.thresholds import DynamicThresholds

ON_INERT = ("error", "warn", "ignore")
DEFAULT_ON_INERT = "error"


class InertClippingError(ValueError):
    """The trainer configuration makes every PPO ratio exactly 1, so no clip can act."""


@dataclass
class EntropyControl:
    """Every entropy-control setting of a run; an invalid value raises ``ValueError`` whose
    message starts with the key (``"on_inert: ..."``).

    Args:
        strategy: a strategy name (``flexent.strategies.list_strategies()``) or a built strategy
            object (``weights(step, *, entropy)``, ``state_dict``, ``load_state_dict``).
        strategy_params: keyword arguments for ``get_strategy``; ``total_steps`` defaults to the
            trainer's number of optimizer steps.
        thresholds: the ``DynamicThresholds`` (or a mapping for ``DynamicThresholds.from_dict``).
        loss: a registered flexent policy loss name (``flexent.losses.list_policy_losses()``).
        loss_params: keyword arguments of that loss (e.g. ``beta1`` for ``ce_gppo``); those the
            adapters supply (``generator``) are not allowed here.
        region_schemes: the E1-E4 classifications logged each step (``flexent.diagnostics.SCHEMES``).
        on_inert: ``"error"`` (default), ``"warn"`` or ``"ignore"`` when clipping is inert (one
            optimizer step per generation batch: the ratio is 1 and no threshold acts).
        entropy_coef: entropy bonus coefficient c_H (``flexent.losses.entropy_bonus``): the
            per-token loss becomes ``loss - c_H * H``; 0 = off.
        log_pred_dh_full: also log ``region*/E*/pred_dH_full`` (the exact first-order entropy
            change, docs/metrics.md), at the cost of one extra no-grad forward with the full
            logits per generation batch (TRL only; verl's loss never sees logits).
        adaptive_entropy: ``{target, delta, min, max}`` turns ``entropy_coef`` into the initial
            value of Skywork-OR1's adaptive coefficient
            (:class:`flexent.strategies.adaptive.AdaptiveEntropyCoef`; TRL, and verl with
            ``flexent_sync``); ``{}`` = off.
        advantage: ``{name, params}``: a flexent advantage estimator
            (``flexent.advantages.list_advantages()``, e.g. ``{name: qae, params: {k: 0.4}}``)
            in place of TRL's group-mean advantages (TRL; in verl set
            ``algorithm.adv_estimator=flexent_qae``); ``{}`` = the engine's own.
    """

    strategy: Any = "static"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    thresholds: Any = field(default_factory=DynamicThresholds)
    loss: str = "ppo_clip"
    loss_params: dict[str, Any] = field(default_factory=dict)
    region_schemes: tuple[str, ...] = tuple(SCHEMES)
    on_inert: str = DEFAULT_ON_INERT
    entropy_coef: float = 0.0
    log_pred_dh_full: bool = False
    adaptive_entropy: dict[str, Any] = field(default_factory=dict)
    advantage: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.advantage = check_advantage(self.advantage)
        except ValueError as err:
            raise ValueError(f"advantage: {err}") from None
        self.thresholds = _thresholds(self.thresholds)
        if self.on_inert not in ON_INERT:
            raise ValueError(f"on_inert: must be one of {list(ON_INERT)}, got {self.on_inert!r}")
        try:
            get_policy_loss(self.loss)
        except ValueError as err:
            raise ValueError(f"loss: {err}") from None
        try:
            self.loss_params = check_loss_params(self.loss, self.loss_params)
        except ValueError as err:
            raise ValueError(f"loss_params: {err}") from None
        coef = self.entropy_coef
        if isinstance(coef, bool) or not (isinstance(coef, (int, float)) and math.isfinite(coef)):
            raise ValueError(f"entropy_coef: must be a finite float, got {coef!r}")
        self.region_schemes = _schemes(self.region_schemes)
        if self.adaptive_entropy:
            self.build_adaptive_entropy()  # validates the keys and values
        if not isinstance(self.log_pred_dh_full, bool):
            raise ValueError(
                f"log_pred_dh_full: must be true or false, got {self.log_pred_dh_full!r}"
            )
        if isinstance(self.strategy, str):
            self.strategy_params = _strategy_params(self.strategy, self.strategy_params)
        traits = loss_traits(self.loss)
        if not traits.per_token_advantage and getattr(
            self.build_strategy(total_steps=1), "shapes_advantages", False
        ):
            raise ValueError(
                f"strategy: {self.strategy!r} reweights each token's advantage, but loss "
                f"{self.loss!r} averages the advantage over the sequence, so the reweighting "
                "would not act per token: use a token-level loss (e.g. ppo_clip)"
            )
        if (traits.sequence_level or traits.scalar_eps) and not self.strategy_always_std:
            why = (
                "clips one ratio per sequence"
                if traits.sequence_level
                else "searches its own clip bounds from scalar eps"
            )
            raise ValueError(
                f"strategy: {self.strategy_name!r} with loss {self.loss!r}: flexent's thresholds are "
                f"per token but {self.loss} {why}, so only strategy 'static' is allowed (set "
                "eps_std to the loss's bounds)"
            )

    @property
    def strategy_name(self) -> str:
        return self.strategy if isinstance(self.strategy, str) else str(self.strategy.name)

    @property
    def strategy_always_std(self) -> bool:
        """Whether the strategy keeps both thresholds at ``eps_std`` (the ``always_std`` trait)."""
        cls = strategy_class(self.strategy) if isinstance(self.strategy, str) else self.strategy
        return bool(getattr(cls, "always_std", False))

    def build_strategy(self, total_steps: int) -> Strategy:
        """The strategy for a run of ``total_steps`` optimizer steps (``strategy_params`` may
        set its own ``total_steps``); a strategy object is returned as given."""
        if not isinstance(self.strategy, str):
            return self.strategy  # type: ignore[no-any-return]
        params = {"total_steps": total_steps, **self.strategy_params}
        return get_strategy(self.strategy, **params)

    def build_adaptive_entropy(self) -> AdaptiveEntropyCoef | None:
        """The adaptive coefficient controller, or None when ``adaptive_entropy`` is empty."""
        if not self.adaptive_entropy:
            return None
        if not isinstance(self.adaptive_entropy, Mapping):
            raise ValueError(f"adaptive_entropy: must be a mapping, got {self.adaptive_entropy!r}")
        known = {"target", "delta", "min", "max"}
        unknown = sorted(set(self.adaptive_entropy) - known)
        if unknown:
            raise ValueError(f"adaptive_entropy: unknown key(s) {unknown}; valid: {sorted(known)}")
        try:
            return AdaptiveEntropyCoef(coef=float(self.entropy_coef), **self.adaptive_entropy)
        except ValueError as err:
            raise ValueError(
                str(err).replace("adaptive_entropy.", "adaptive_entropy: ", 1)
            ) from None

    def check_aggregation(self, agg_mode: str) -> list[str]:
        """Messages (possibly none) when the run's aggregation mode ``agg_mode`` (a
        ``flexent.losses.AGG_MODES`` name) differs from the one the loss's paper uses."""
        paper = loss_traits(self.loss).default_agg
        if paper is None or agg_mode == paper:
            return []
        return [
            f"{self.loss} aggregates with {agg_mode}; its paper uses {paper}: choose that "
            "aggregation to match it"
        ]

    def check_eps_scale(self, eps_low: float, eps_high: float) -> list[str]:
        """Messages when a sequence-level loss gets token-level clip widths (``> 1e-2``)."""
        if not loss_traits(self.loss).sequence_level or max(eps_low, eps_high) <= 1e-2:
            return []
        return [
            f"{self.loss} clips the sequence ratio, but eps_low/eps_high = {eps_low}/{eps_high} "
            "are token-level widths that almost never clip it: use about 3e-4 / 4e-4 (the GSPO "
            "paper's)"
        ]


def step_seed(seed: int, rank: int, step: int | None) -> int:
    """Seed of a randomised loss's generator (``clip_cov``) on ``rank`` at training step ``step``.

    ``((seed * 1_000_003 + rank) * 1_000_033 + step) mod 2**63``: distinct for every rank and
    step of a run (step < 1_000_033), so the draws of a step do not depend on the steps before
    it and a resumed run draws what the uninterrupted run drew. ``step=None`` (no step known)
    gives ``seed + rank``, one generator for the whole run.

    >>> step_seed(0, 0, 5), step_seed(0, 1, 5), step_seed(3, 0, None)
    (5, 1000038, 3)
    """
    if step is None:
        return (seed + rank) % 2**63
    return ((seed * 1_000_003 + rank) * 1_000_033 + step) % 2**63


def handle_inert(on_inert: str, message: str) -> None:
    """Raise :class:`InertClippingError`, warn, or do nothing, per ``on_inert``."""
    if on_inert == "error":
        raise InertClippingError(message)
    if on_inert == "warn":
        warnings.warn(message, UserWarning, stacklevel=3)


def _thresholds(value: Any) -> DynamicThresholds:
    if isinstance(value, DynamicThresholds):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"thresholds: must be DynamicThresholds or a mapping, got {value!r}")
    try:
        return DynamicThresholds.from_dict(value)
    except ValueError as err:
        raise ValueError(f"thresholds: {err}") from None


def _schemes(value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in SCHEMES]
    if unknown:
        raise ValueError(
            f"region_schemes: unknown scheme(s) {unknown}; valid: {list(SCHEMES)} (or empty)"
        )
    return names


def _strategy_params(name: str, params: Any) -> dict[str, Any]:
    """Check the names and the values (by building the strategy once) of ``params``."""
    try:
        strategy_class(name)
    except ValueError as err:
        raise ValueError(f"strategy: {err}") from None
    if not isinstance(params, Mapping):
        raise ValueError(f"strategy_params: must be a mapping, got {params!r}")
    try:
        check_strategy_params(name, params)
        get_strategy(name, **{"total_steps": 1, **params})
    except (ValueError, TypeError) as err:
        raise ValueError(f"strategy_params: {err}") from None
    return dict(params)

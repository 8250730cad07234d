"""The per-step control of a run, engine-neutral: :class:`StepController`.

Both engine adapters (TRL's trainer, verl's ``flexent_sync`` driver) hold one controller and
translate their own step counter into flexent's k (optimizer steps counted from 0; verl's
``global_steps`` is k + 1). Per step the controller asks the strategy for its weights
``(w_up, w_low)`` once, with the last observed rollout entropy, and fixes the step's
entropy-bonus coefficient: ``entropy_coef`` (or, with ``adaptive_entropy``, Skywork-OR1's
adaptive coefficient updated from the same entropy, once per new observation: once per rollout
batch however many optimizer steps train on it) plus the strategy's own bonus (``target``
with ``actuator: cascade | bonus``), and the strategy's advantage shaping (the loss-weight
controllers, :mod:`flexent.control.shaping`). Its state (strategy, adaptive coefficient, last entropy,
last weights) goes into every checkpoint as ``flexent_state.json``.

>>> from flexent.control.settings import EntropyControl
>>> c = StepController(EntropyControl(strategy="id"), total_steps=4)
>>> c.begin_step(0), c.weights, c.begin_step(0)   # k = 0: lambda = 1; asked once per step
(True, (1.0, 0.0), False)
>>> c.begin_step(3); c.weights                     # k = 3: lambda = -(3 - 2) / 2
True
(0.0, 0.5)
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from flexent.control.settings import EntropyControl
from flexent.control.shaping import shape_advantages
from flexent.errors import json_error
from flexent.strategies import Strategy

STATE_FILE = "flexent_state.json"
# The verl adapter wrote its state under this name before the two adapters shared one format;
# :meth:`StepController.load` reads it when STATE_FILE is absent.
LEGACY_STATE_FILE = "flexent_strategy.json"
STATE_FORMAT = 1


class MissingEntropyError(RuntimeError):
    """A step's control needs the rollout entropy and none was observed."""


class StepController:
    """Weights, entropy-bonus coefficient and checkpoint state of one run, step by step.

    Args:
        control: the run's validated settings.
        total_steps: the run's number of optimizer steps T; may be given later
            (:meth:`set_total_steps`, e.g. when TRL knows ``max_steps`` only in ``train()``)
            unless ``strategy_params`` fixes it.
        missing_entropy_hint: appended to the error raised when a step needs the rollout
            entropy and none was observed (what to change in the engine's settings).
    """

    def __init__(
        self,
        control: EntropyControl,
        *,
        total_steps: int | None = None,
        missing_entropy_hint: str = "",
    ) -> None:
        self.control = control
        self.adaptive = control.build_adaptive_entropy()
        self._total_steps = total_steps
        self._strategy: Strategy | None = None
        self._pending: dict[str, Any] | None = None
        self._hint = missing_entropy_hint
        self.rollout_entropy: float | None = None
        self._entropy_step: int | None = None
        self._fresh = False  # an observation arrived since the last begin_step
        self.step = -1  # the step whose values are held (-1: none yet)
        self.weights: tuple[float, float] = (0.0, 0.0)
        self.bonus = 0.0  # the strategy's own bonus coefficient at self.step
        self.shaping: tuple[str, dict[str, float]] | None = None  # the strategy's, at self.step
        self.adaptive_coef = 0.0  # the adaptive coefficient applied at self.step

    # -- the strategy -----------------------------------------------------------------------
    def set_total_steps(self, total_steps: int) -> None:
        """The run's T, when it was not known at construction (ignored once built)."""
        if self._strategy is None:
            self._total_steps = int(total_steps)

    @property
    def _can_build(self) -> bool:
        return self._total_steps is not None or "total_steps" in self.control.strategy_params

    @property
    def strategy(self) -> Strategy:
        """The run's strategy, built at first use (a pending checkpoint state is loaded then)."""
        if self._strategy is None:
            if not self._can_build:
                raise ValueError(
                    "the strategy needs total_steps: the run's number of optimizer steps is not "
                    "known yet and entropy_control.strategy_params has no total_steps"
                )
            self._strategy = self.control.build_strategy(int(self._total_steps or 0))
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._load_strategy(pending)
        return self._strategy

    @property
    def uses_bonus(self) -> bool:
        """Whether this run adds an entropy bonus at some step."""
        return bool(
            self.control.entropy_coef or self.adaptive is not None or self.strategy.uses_bonus
        )

    # -- per step ---------------------------------------------------------------------------
    def observe_entropy(self, entropy: float, *, step: int | None = None) -> None:
        """Record a rollout batch's mean token entropy (pi_old's, over response tokens).

        With ``step``, only the first value of that step counts (verl's sub-batches of one
        step); without, the latest value counts.
        """
        if step is not None and step == self._entropy_step:
            return
        self.rollout_entropy = float(entropy)
        self._entropy_step = step
        self._fresh = True

    def begin_step(self, step: int) -> bool:
        """Fix the weights and the bonus of optimizer step ``step`` (k, from 0).

        Computed once per step: returns True when they were computed now, False when ``step``
        is the step already held (a later micro-batch of the same step).
        """
        step = int(step)
        if step == self.step:
            return False
        strategy = self.strategy
        entropy = self.rollout_entropy
        if entropy is None and (strategy.needs_entropy or self.adaptive is not None):
            who = "adaptive_entropy" if self.adaptive is not None else f"strategy {strategy.name!r}"
            raise MissingEntropyError(
                f"{who} needs the rollout entropy of step {step}, but none was observed"
                + (f" ({self._hint})" if self._hint else "")
            )
        fresh, self._fresh = self._fresh, False
        if _takes_fresh(strategy):
            w_up, w_low = strategy.weights(step, entropy=entropy, fresh=fresh)
        else:  # a user's own strategy object: weights(step, *, entropy)
            w_up, w_low = strategy.weights(step, entropy=entropy)
        self.weights = (float(w_up), float(w_low))
        self.bonus = float(strategy.bonus_coef())
        shaping = getattr(strategy, "shaping", lambda: None)()
        self.shaping = None if shaping is None else (shaping[0], dict(shaping[1]))
        if self.adaptive is not None and (fresh or self.step < 0):
            # Skywork-OR1 adapts once per rollout batch (a new entropy observation); the later
            # optimizer steps of the same batch apply the coefficient it set
            assert entropy is not None  # checked above
            self.adaptive_coef = float(self.adaptive.step(entropy))
        self.step = step
        return True

    @property
    def entropy_coef(self) -> float:
        """The entropy-bonus coefficient of the held step (0 = no bonus)."""
        base = self.adaptive_coef if self.adaptive is not None else float(self.control.entropy_coef)
        return base + self.bonus

    def shape_advantages(self, advantages: torch.Tensor, *, logprobs: torch.Tensor) -> torch.Tensor:
        """``advantages`` ``[B, T]`` with the held step's advantage shaping applied (unchanged
        when the strategy does not shape; :mod:`flexent.control.shaping`)."""
        if self.shaping is None:
            return advantages
        return shape_advantages(self.shaping[0], self.shaping[1], advantages, logprobs=logprobs)

    def metrics(self) -> dict[str, float]:
        """The held step's ``control/*`` values: the strategy's and the adaptive coefficient's,
        the step k, and (when the run uses a bonus) the total coefficient applied."""
        if self.step < 0:
            return {}
        out = {k: float(v) for k, v in self.strategy.metrics().items()}
        if self.adaptive is not None:
            out.update({k: float(v) for k, v in self.adaptive.metrics().items()})
        out["control/step"] = float(self.step)
        if self.uses_bonus:
            out["control/entropy_coef"] = self.entropy_coef
        return out

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: everything a resumed run needs to continue exactly."""
        strategy = self.strategy
        adaptive = None
        if self.adaptive is not None:
            adaptive = {**self.adaptive.state_dict(), "applied": self.adaptive_coef}
        return {
            "format": STATE_FORMAT,
            "strategy": strategy.name,
            "total_steps": strategy.total_steps,
            "state": strategy.state_dict(),
            "rollout_entropy": self.rollout_entropy,
            "entropy_step": self._entropy_step,
            "fresh": self._fresh,
            "step": self.step,
            "weights": list(self.weights),
            "bonus": self.bonus,
            "shaping": None if self.shaping is None else list(self.shaping),
            "adaptive_entropy": adaptive,
        }

    def load_state_dict(self, state: Mapping[str, Any], *, where: str = "state") -> None:
        """Restore :meth:`state_dict`'s output, or either adapter's earlier format (TRL's
        ``flexent_state.json`` with the strategy state under ``strategy``; verl's
        ``flexent_strategy.json`` with it under ``state``)."""
        state = _current_format(state, where)
        self._pending = {"where": where, **state}
        if self._strategy is not None or self._can_build:
            self.strategy  # noqa: B018  (builds it and loads the pending state now)
        self.rollout_entropy = state["rollout_entropy"]
        self._entropy_step = state["entropy_step"]
        self._fresh = bool(state.get("fresh", False))
        self.step = int(state["step"])
        self.weights = (float(state["weights"][0]), float(state["weights"][1]))
        self.bonus = float(state["bonus"])
        shaping = state.get("shaping")
        self.shaping = None if shaping is None else (str(shaping[0]), dict(shaping[1]))
        adaptive = state.get("adaptive_entropy")
        if self.adaptive is not None:
            if adaptive is None:
                raise ValueError(
                    f"{where}: this run sets adaptive_entropy but the checkpoint has no adaptive "
                    "entropy state to resume"
                )
            self.adaptive.load_state_dict(adaptive)
            self.adaptive_coef = float(adaptive.get("applied", self.adaptive_coef))

    def _load_strategy(self, pending: dict[str, Any]) -> None:
        strategy, where = self._strategy, pending["where"]
        assert strategy is not None
        for key, mine in (("strategy", strategy.name), ("total_steps", strategy.total_steps)):
            saved = pending.get(key)
            if saved is not None and saved != mine:
                raise ValueError(
                    f"{where}: saved {key}={saved!r} but this run has {key}={mine!r}; resume "
                    "with the same entropy-control settings"
                )
        strategy.load_state_dict(dict(pending["state"]))

    def save(self, folder: str | os.PathLike[str]) -> str:
        """Write :data:`STATE_FILE` into ``folder`` (atomically); returns its path."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.state_dict(), f, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return path

    def load(self, folder: str | os.PathLike[str]) -> str:
        """Restore from ``folder`` (:data:`STATE_FILE`, else :data:`LEGACY_STATE_FILE`); a
        missing or unreadable file is an error naming it (the schedule would silently restart).
        Returns the path read."""
        path = state_file(folder)
        if path is None:
            raise FileNotFoundError(
                f"{os.path.join(folder, STATE_FILE)}: missing; this checkpoint was not written "
                "by flexent, so the entropy-control state cannot be restored"
            )
        with open(path, encoding="utf-8") as f:
            try:
                state = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(json_error(path, err)) from None
        self.load_state_dict(state, where=path)
        return path


def _takes_fresh(strategy: Any) -> bool:
    """Whether ``strategy.weights`` accepts ``fresh=`` (flexent's strategies; a user's object
    or subclass with the documented ``weights(step, *, entropy)`` does not)."""
    try:
        params = inspect.signature(strategy.weights).parameters
    except (TypeError, ValueError):
        return False
    return "fresh" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def state_file(folder: str | os.PathLike[str]) -> str | None:
    """The controller state file in a checkpoint ``folder`` (either name), or None."""
    for name in (STATE_FILE, LEGACY_STATE_FILE):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def _current_format(state: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Any saved controller state as the current format's keys."""
    if not isinstance(state, Mapping) or "strategy" not in state:
        raise ValueError(f"{where}: not a flexent controller state (no 'strategy' key)")
    if state.get("format") == STATE_FORMAT:
        return dict(state)
    if isinstance(state["strategy"], Mapping):  # TRL's file before the shared format
        return {
            "strategy": state["strategy"].get("strategy"),
            "total_steps": None,
            "state": dict(state["strategy"]),
            "rollout_entropy": state.get("rollout_entropy"),
            "entropy_step": None,
            "step": int(state.get("weights_step", -1)),
            "weights": list(state.get("weights", (0.0, 0.0))),
            "bonus": float(state.get("bonus", 0.0)),
            "adaptive_entropy": state.get("adaptive_entropy"),
        }
    if "state" in state:  # verl's flexent_strategy.json
        return {
            "strategy": state["strategy"],
            "total_steps": state.get("total_steps"),
            "state": dict(state["state"]),
            "rollout_entropy": None,
            "entropy_step": None,
            "step": -1,  # verl recomputed the weights of the next step after a resume
            "weights": [0.0, 0.0],
            "bonus": 0.0,
            "adaptive_entropy": state.get("adaptive_entropy"),
        }
    raise ValueError(f"{where}: unknown flexent controller state format")

"""Strategy base class, registry and input validation shared by every strategy."""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

_REGISTRY: dict[str, type[Strategy]] = {}

S = TypeVar("S", bound="type[Strategy]")


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: make a strategy available as ``get_strategy(name)``."""

    def deco(cls: S) -> S:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_strategies() -> list[str]:
    """Names accepted by :func:`get_strategy`, sorted."""
    return sorted(_REGISTRY)


def get_strategy(name: str, **params: Any) -> Strategy:
    """Build the strategy registered as ``name`` with keyword ``params``.

    Raises ``ValueError`` for an unknown name (listing the valid ones) or an unknown parameter
    (listing the accepted ones).

    >>> get_strategy("id", total_steps=400).weights(100)
    (0.5, 0.0)
    """
    check_strategy_params(name, params)
    return _REGISTRY[name](**params)


def check_strategy_params(name: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for an unknown strategy ``name`` or a parameter it does not accept
    (listing the valid ones), without building the strategy (a config can be checked before
    ``total_steps`` is known).

    >>> check_strategy_params("od", {"phase_ratio": 0.5})
    Traceback (most recent call last):
    ...
    ValueError: strategy 'od' got unknown parameter(s) ['phase_ratio']; accepted: ['total_steps', 'h_min_ratio', 'h_init']
    """
    accepted = strategy_param_names(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"strategy {name!r} got unknown parameter(s) {unknown}; accepted: {accepted}"
        )


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name`` (its traits: ``needs_entropy``, ``step_free``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; valid names: {', '.join(list_strategies())}")
    return _REGISTRY[name]


def strategy_param_names(name: str) -> list[str]:
    """Keyword parameters of strategy ``name`` (``total_steps`` first).

    >>> strategy_param_names("id")
    ['total_steps', 'phase_ratio']
    """
    init = strategy_class(name).__init__
    return [p for p in inspect.signature(init).parameters if p != "self"]


def check_total_steps(total_steps: int) -> int:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    return total_steps


def check_ratio(name: str, value: float) -> float:
    """A ratio strictly inside (0, 1), e.g. ``phase_ratio`` or ``h_min_ratio``."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def check_entropy(entropy: Any, *, name: str = "entropy") -> float:
    """A finite, non-negative mean token entropy (float or 0-dim tensor), returned as float."""
    value = float(entropy)
    if math.isnan(value) or math.isinf(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0 (nats), got {value!r}")
    return value


# Defaults of the strategies' parameters, written once (docs/method.md §4): the phase ratio rho
# of id / did and the target presets, od's floor H_min = h_min_ratio * H_init, and the number of
# oscillation cycles of the target controller's od-shaped preset.
PHASE_RATIO = 0.5
H_MIN_RATIO = 0.2
OD_CYCLES = 4


class Strategy:
    """An entropy-control strategy: per training step, the mixing weights ``(w_up, w_low)``.

    ``w_up`` mixes the dynamic upper threshold H(p) into eps_high, ``w_low`` the dynamic lower
    threshold M(p) into eps_low (docs/method.md §4): ``E+ = w_up H(p) + (1 - w_up) eps_std``.
    Call :meth:`weights` once per training step, in increasing step order, with that step's
    mean rollout token entropy when the strategy needs it (``needs_entropy``).
    """

    name: ClassVar[str] = ""
    # Traits the engine adapters read (never the strategy's name): the strategy observes the
    # step's rollout entropy; its weights are the same at every step (no step delivery needed);
    # its weights are always (0, 0), i.e. the thresholds stay at eps_std (GRPO's clip).
    needs_entropy: ClassVar[bool] = False
    step_free: ClassVar[bool] = False
    always_std: ClassVar[bool] = False

    def __init__(self, total_steps: int) -> None:
        self.total_steps = check_total_steps(total_steps)
        self._last: dict[str, float] = {}
        self.fresh = True  # whether the last weights() call brought a new entropy observation

    def weights(
        self, step: int, *, entropy: float | None = None, fresh: bool = True
    ) -> tuple[float, float]:
        """``(w_up, w_low)`` in [0, 1] for training step ``step`` in ``[0, total_steps]``.

        ``fresh`` says whether ``entropy`` is a new observation (False: the same rollout batch's
        value again, at a later optimizer step of that batch); strategies that adapt once per
        observation (``repo_r``) read it as :attr:`fresh`.
        """
        step = self._check_step(step)
        self.fresh = bool(fresh)
        if entropy is not None:
            entropy = check_entropy(entropy)
        elif self.needs_entropy:
            raise ValueError(
                f"strategy {self.name!r} needs the step's mean token entropy: "
                f"call weights({step}, entropy=...)"
            )
        w_up, w_low = self._weights(step, entropy)
        self._last.update({"control/w_up": w_up, "control/w_low": w_low})
        return w_up, w_low

    def _weights(self, step: int, entropy: float | None) -> tuple[float, float]:
        raise NotImplementedError

    @property
    def uses_bonus(self) -> bool:
        """Whether :meth:`bonus_coef` can be nonzero (the adapter must apply it)."""
        return False

    def bonus_coef(self) -> float:
        """An entropy-bonus coefficient the strategy adds at this step (the ``target``
        controller's cascaded actuator; 0 for every other strategy). Read after :meth:`weights`;
        the adapters add it to ``entropy_coef``."""
        return 0.0

    @property
    def shapes_advantages(self) -> bool:
        """Whether :meth:`shaping` can return a shaping (the adapter must apply it)."""
        return False

    def shaping(self) -> tuple[str, dict[str, float]] | None:
        """The advantage shaping of the last step, ``(kind, params)`` for
        :func:`flexent.control.shaping.shape_advantages`, or None (the loss-weight controllers
        EntroPIC, AEPO and REPO-R; read after :meth:`weights`)."""
        return None

    def metrics(self) -> dict[str, float]:
        """The last step's ``control/*`` values (empty before the first :meth:`weights` call)."""
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable state for checkpoints."""
        return {"strategy": self.name, "last": dict(self._last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("strategy") != self.name:
            got = state.get("strategy") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state_dict is for strategy {got!r}, not {self.name!r}")
        self._last = {str(k): float(v) for k, v in state.get("last", {}).items()}

    def _check_step(self, step: int) -> int:
        if isinstance(step, bool):
            raise ValueError(f"step must be an int, got {step!r}")
        try:
            step = operator.index(step)
        except TypeError:
            raise ValueError(f"step must be an int, got {step!r}") from None
        if not 0 <= step <= self.total_steps:
            raise ValueError(f"step must be in [0, total_steps={self.total_steps}], got {step}")
        return step

    def __repr__(self) -> str:
        return f"{type(self).__name__}(total_steps={self.total_steps})"


class FeedbackStrategy(Strategy):
    """A closed-loop strategy driven by the observed entropy; its state goes into checkpoints.

    ``h_init`` (nats) is the reference entropy; when not given it is measured at the first
    :meth:`weights` call. Steps must not go backwards (load a ``state_dict`` to rewind); a
    repeated call for the last step returns the same weights without updating the state.
    """

    needs_entropy = True

    def __init__(self, total_steps: int, h_init: float | None = None) -> None:
        super().__init__(total_steps)
        self.h_init_config = None if h_init is None else self._check_h_init(h_init, "h_init")
        self.h_init: float | None = self.h_init_config
        self._last_step: int | None = None

    @staticmethod
    def _check_h_init(value: Any, where: str) -> float:
        value = check_entropy(value, name=where)
        if value <= 0.0:
            raise ValueError(f"{where} must be > 0 (nats) for entropy control, got {value!r}")
        return value

    def _weights(self, step: int, entropy: float | None) -> tuple[float, float]:
        assert entropy is not None  # guaranteed by needs_entropy
        if self._last_step is not None:
            if step == self._last_step:
                return self._last["control/w_up"], self._last["control/w_low"]
            if step < self._last_step:
                raise ValueError(
                    f"step {step} is before the last step {self._last_step}; strategies "
                    "advance one step at a time (load a state_dict to resume from earlier)"
                )
        if self.h_init is None:
            self.h_init = self._check_h_init(entropy, f"h_init (entropy measured at step {step})")
        self._last_step = step
        self._last["control/h_init"] = self.h_init
        return self._update(step, entropy, self.h_init)

    def _update(self, step: int, entropy: float, h_init: float) -> tuple[float, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(h_init=self.h_init, last_step=self._last_step)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        try:
            h_init, last_step = state["h_init"], state["last_step"]
        except KeyError as err:
            raise ValueError(f"state_dict for {self.name!r} lacks key {err.args[0]!r}") from None
        self.h_init = None if h_init is None else float(h_init)
        self._last_step = None if last_step is None else int(last_step)

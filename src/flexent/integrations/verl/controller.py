"""Driver-side owner of the strategy in a verl run (no verl import here).

verl counts ``global_steps`` from 1; the strategies count k from 0 (METHOD §4: lambda_k = 1 - 2k/T
starts at 1), so step k = global_steps - 1 and a run of T verl steps covers k = 0 .. T-1.
The weights are computed once per verl step, at the first actor update of that step, from the
mean token entropy measured on that step's rollouts (pi_old's per-token entropy averaged over
the update batch's response tokens, logged as ``actor/entropy/mean``; not verl's
``actor/entropy``, which follows ``actor.loss_agg_mode``); with ``parameter_sync_step > 1`` the
later sub-batches reuse them.
"""

from __future__ import annotations

import json
import os
from typing import Any

STATE_FILE = "flexent_strategy.json"


class StepController:
    """Weights and entropy-bonus coefficient per verl step, the entropy they see, and their
    checkpointed state.

    The coefficient of step k (:meth:`entropy_coef`) is, as in the TRL adapter, ``entropy_coef``
    or, with ``adaptive`` (:class:`flexent.strategies.adaptive.AdaptiveEntropyCoef`), the
    adaptive coefficient updated from the step's rollout entropy, plus the strategy's own bonus
    (``target`` with ``actuator: cascade | bonus``).

    >>> from flexent.strategies import get_strategy
    >>> c = StepController(get_strategy("id", total_steps=4))
    >>> c.weights(1), c.weights(4)     # k = 0: lambda = 1;  k = 3: lambda = -(3 - 2) / 2
    ((1.0, 0.0), (0.0, 0.5))
    """

    def __init__(self, strategy: Any, *, entropy_coef: float = 0.0, adaptive: Any = None) -> None:
        self.strategy = strategy
        self.base_coef = float(entropy_coef)
        self.adaptive = adaptive
        self._entropy: dict[int, float] = {}
        self._cache: tuple[int, float, float] | None = None
        self._coef = 0.0  # the entropy-bonus coefficient of the cached step

    @classmethod
    def from_policy_loss(cls, policy_loss: Any, *, total_steps: int) -> StepController:
        """The controller of a ``FlexentPolicyLossConfig`` (or verl's own policy_loss: static)."""
        from flexent.strategies import get_strategy

        build = getattr(policy_loss, "build_strategy", None)
        if build is None:
            return cls(get_strategy("static", total_steps=total_steps))
        strategy = build(total_steps=total_steps)
        if not getattr(policy_loss, "uses_bonus", False):
            return cls(strategy)
        control = policy_loss.control(eps_std=0.2)
        return cls(strategy, entropy_coef=control.entropy_coef,
                   adaptive=control.build_adaptive_entropy())  # fmt: skip

    @property
    def uses_bonus(self) -> bool:
        return bool(self.base_coef or self.adaptive is not None or self.strategy.uses_bonus)

    def observe_entropy(self, global_step: int, entropy: float) -> None:
        """Record the step's rollout entropy (the first value of a step wins)."""
        self._entropy.setdefault(int(global_step), float(entropy))

    def weights(self, global_step: int) -> tuple[float, float]:
        """``(w_up, w_low)`` for verl step ``global_step`` (>= 1), computed once per step."""
        global_step = int(global_step)
        if self._cache is not None and self._cache[0] == global_step:
            return self._cache[1], self._cache[2]
        if global_step < 1:
            raise ValueError(f"verl global_steps starts at 1, got {global_step}")
        entropy = self._entropy.get(global_step)
        if entropy is None and (self.strategy.needs_entropy or self.adaptive is not None):
            who = "adaptive_entropy" if self.adaptive is not None else (
                f"strategy {self.strategy.name!r}")  # fmt: skip
            raise RuntimeError(
                f"{who} needs the rollout entropy of step {global_step}, "
                "but none was measured (verl skips the old-log-prob pass in "
                "algorithm.rollout_correction.bypass_mode; disable it for this setting)"
            )
        w_up, w_low = self.strategy.weights(global_step - 1, entropy=entropy)
        coef = self.adaptive.step(entropy) if self.adaptive is not None else self.base_coef
        self._coef = coef + float(self.strategy.bonus_coef())
        self._cache = (global_step, w_up, w_low)
        self._entropy = {s: h for s, h in self._entropy.items() if s > global_step}
        return w_up, w_low

    def entropy_coef(self, global_step: int) -> float:
        """The entropy-bonus coefficient of verl step ``global_step`` (computed with the
        weights, once per step)."""
        self.weights(global_step)
        return self._coef

    def metrics(self) -> dict[str, float]:
        """The strategy's last ``control/*`` values under verl's ``actor/`` namespace."""
        out = {f"actor/{k}": float(v) for k, v in self.strategy.metrics().items()}
        if self.adaptive is not None:
            out.update({f"actor/{k}": float(v) for k, v in self.adaptive.metrics().items()})
        if self._cache is not None:
            out["actor/control/step"] = float(self._cache[0] - 1)
            if self.uses_bonus:
                out["actor/control/entropy_coef"] = self._coef
        return out

    def state_dict(self) -> dict[str, Any]:
        state = {
            "strategy": self.strategy.name,
            "total_steps": self.strategy.total_steps,
            "state": self.strategy.state_dict(),
        }
        if self.adaptive is not None:
            state["adaptive_entropy"] = self.adaptive.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], *, where: str = "state") -> None:
        for key in ("strategy", "total_steps"):
            mine = getattr(self.strategy, "name" if key == "strategy" else key)
            if state.get(key) != mine:
                raise ValueError(
                    f"{where}: saved {key}={state.get(key)!r} but this run has {key}={mine!r}; "
                    "resume with the same flexent policy_loss settings"
                )
        self.strategy.load_state_dict(state["state"])
        if self.adaptive is not None:
            if "adaptive_entropy" not in state:
                raise ValueError(
                    f"{where}: this run sets adaptive_entropy but the checkpoint has no adaptive "
                    "entropy state to resume"
                )
            self.adaptive.load_state_dict(state["adaptive_entropy"])
        self._cache = None

    def save(self, folder: str) -> str:
        """Write the state into ``folder`` (verl's ``global_step_N``); returns the file path."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state_dict(), f, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return path

    def load(self, folder: str) -> None:
        """Restore from ``folder``; a missing file is an error (the strategy would restart)."""
        path = os.path.join(folder, STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: this verl checkpoint has no flexent strategy state, so the "
                f"{self.strategy.name!r} schedule cannot resume exactly"
            )
        with open(path) as f:
            try:
                state = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
        self.load_state_dict(state, where=path)

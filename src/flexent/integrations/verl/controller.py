"""Driver-side owner of the strategy in a verl run (no verl import here).

verl counts ``global_steps`` from 1; the strategies count k from 0 (METHOD §4: lambda_k = 1 - 2k/T
starts at 1), so step k = global_steps - 1 and a run of T verl steps covers k = 0 .. T-1.
The weights are computed once per verl step, at the first actor update of that step, from the
mean token entropy measured on that step's rollouts (verl's ``actor/entropy``, the entropy of
pi_old on the update batch); with ``parameter_sync_step > 1`` the later sub-batches reuse them.
"""

from __future__ import annotations

import json
import os
from typing import Any

STATE_FILE = "flexent_strategy.json"


class StepController:
    """Weights per verl step, the entropy they see, and their checkpointed state.

    >>> from flexent.strategies import get_strategy
    >>> c = StepController(get_strategy("id", total_steps=4))
    >>> c.weights(1), c.weights(4)     # k = 0: lambda = 1;  k = 3: lambda = -(3 - 2) / 2
    ((1.0, 0.0), (0.0, 0.5))
    """

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self._entropy: dict[int, float] = {}
        self._cache: tuple[int, float, float] | None = None

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
        if entropy is None and self.strategy.needs_entropy:
            raise RuntimeError(
                f"strategy {self.strategy.name!r} needs the rollout entropy of step {global_step}, "
                "but none was measured (verl skips the old-log-prob pass in "
                "algorithm.rollout_correction.bypass_mode; disable it for this strategy)"
            )
        w_up, w_low = self.strategy.weights(global_step - 1, entropy=entropy)
        self._cache = (global_step, w_up, w_low)
        self._entropy = {s: h for s, h in self._entropy.items() if s > global_step}
        return w_up, w_low

    def metrics(self) -> dict[str, float]:
        """The strategy's last ``control/*`` values under verl's ``actor/`` namespace."""
        out = {f"actor/{k}": float(v) for k, v in self.strategy.metrics().items()}
        if self._cache is not None:
            out["actor/control/step"] = float(self._cache[0] - 1)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.name,
            "total_steps": self.strategy.total_steps,
            "state": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], *, where: str = "state") -> None:
        for key in ("strategy", "total_steps"):
            mine = getattr(self.strategy, "name" if key == "strategy" else key)
            if state.get(key) != mine:
                raise ValueError(
                    f"{where}: saved {key}={state.get(key)!r} but this run has {key}={mine!r}; "
                    "resume with the same flexent policy_loss settings"
                )
        self.strategy.load_state_dict(state["state"])
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

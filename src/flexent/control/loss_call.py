"""What a policy-loss call needs besides the engine's tensors, engine-neutral.

- :func:`step_eps`: the step's ``(eps_low, eps_high)`` from pi_old and the weights. A side whose
  weight is 0 is exactly ``eps_std`` as a Python float (not a tensor), so the clip bound is
  computed as TRL's and verl's own losses compute it (bit for bit, as the parity tests check).
- :func:`loss_arguments`: the loss's keyword parameters plus what its traits ask the adapter
  for: a generator for randomised losses (``clip_cov``), the current policy's per-token entropy.
- :class:`StepGenerators`: one generator per device, re-seeded from (seed, rank, step) when the
  step changes (:func:`~flexent.control.settings.step_seed`), so a resumed run draws what the
  uninterrupted run drew.

>>> import math, torch
>>> from flexent.thresholds import DynamicThresholds
>>> old = torch.tensor([[0.0, math.log(0.5)]])
>>> step_eps(DynamicThresholds(), old, w_up=0.0, w_low=0.0)
(0.2, 0.2)
>>> low, high = step_eps(DynamicThresholds(), old, w_up=1.0, w_low=0.0)
>>> low, [round(v, 4) for v in high[0].tolist()]
(0.2, [0.2, 0.3333])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from flexent.control.settings import step_seed
from flexent.losses import loss_traits
from flexent.thresholds import DynamicThresholds

Eps = torch.Tensor | float


def step_eps(
    thresholds: DynamicThresholds,
    old_logprobs: torch.Tensor,
    *,
    w_up: float,
    w_low: float,
    logprobs: torch.Tensor | None = None,
) -> tuple[Eps, Eps]:
    """``(eps_low, eps_high)``: ``[B, T]`` tensors, or ``eps_std`` floats where the weight is 0.

    ``logprobs`` (the current policy's) is read only in the thresholds' ``detached`` mode.
    """
    std_low, std_high = thresholds.std_eps(upper=False), thresholds.std_eps(upper=True)
    if w_up == 0.0 and w_low == 0.0:
        return std_low, std_high
    eps_low, eps_high = thresholds(old_logprobs, w_up=w_up, w_low=w_low, logprobs=logprobs)
    return (std_low if w_low == 0.0 else eps_low), (std_high if w_up == 0.0 else eps_high)


class StepGenerators:
    """Generators of one process (``rank``) for randomised losses, per device and step."""

    def __init__(self, seed: int, rank: int = 0) -> None:
        self.seed, self.rank = int(seed), int(rank)
        self._held: dict[str, tuple[int | None, torch.Generator]] = {}

    def get(self, step: int | None, device: torch.device | str = "cpu") -> torch.Generator:
        """The generator of ``device`` at ``step``: re-seeded when the step changes."""
        key = str(device)
        held = self._held.get(key)
        if held is None or held[0] != step:
            seed = step_seed(self.seed, self.rank, step)
            held = self._held[key] = (step, torch.Generator(device=device).manual_seed(seed))
        return held[1]


def loss_arguments(
    loss: str,
    params: Mapping[str, Any],
    *,
    generator: Callable[[], torch.Generator],
    entropy: torch.Tensor | None,
    missing_entropy_hint: str = "",
) -> dict[str, Any]:
    """``params`` plus the arguments loss ``loss``'s traits ask for: ``generator`` (called only
    when the loss is randomised) and the current policy's per-token ``entropy`` ``[B, T]``
    (detached; a loss that needs it and gets None is an error, with the engine's hint)."""
    out = dict(params)
    traits = loss_traits(loss)
    if traits.needs_generator:
        out["generator"] = generator()
    if traits.needs_entropy:
        if entropy is None:
            raise RuntimeError(
                f"loss {loss!r} needs the current policy's per-token entropy, which did not "
                "reach it" + (f": {missing_entropy_hint}" if missing_entropy_hint else "")
            )
        out["entropy"] = entropy.detach()
    return out

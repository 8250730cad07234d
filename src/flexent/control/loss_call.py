"""What a policy-loss call needs besides the engine's tensors, engine-neutral.

- :func:`step_eps`: the step's ``(eps_low, eps_high)`` from pi_old and the weights. A side whose
  weight is 0 is exactly ``eps_std`` as a Python float (not a tensor), so the clip bound is
  computed as TRL's and verl's own losses compute it (bit for bit, as the parity tests check).
- :func:`loss_arguments`: the loss's keyword parameters plus what its traits ask the adapter
  for: a generator for randomised losses (``clip_cov``), the current policy's per-token entropy,
  pi_old's per-token entropy and second term (``erc``, ``clip_b``, ``clip_v``).
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
    old_entropy: torch.Tensor | None = None,
    old_second_term: torch.Tensor | None = None,
    missing_old_hint: str = "",
) -> dict[str, Any]:
    """``params`` plus the arguments loss ``loss``'s traits ask for: ``generator`` (called only
    when the loss is randomised), the current policy's per-token ``entropy`` ``[B, T]``, and
    pi_old's per-token ``old_entropy`` and ``old_second_term`` ``[B, T]`` (all detached; a loss
    that needs one and gets None is an error, with the engine's hint: ``missing_entropy_hint``
    for the current policy's entropy, ``missing_old_hint`` for pi_old's quantities)."""
    out = dict(params)
    traits = loss_traits(loss)
    if traits.needs_generator:
        out["generator"] = generator()
    needed = (
        (traits.needs_entropy, "entropy", entropy, "the current policy's per-token entropy",
         missing_entropy_hint),
        (traits.needs_old_entropy, "old_entropy", old_entropy,
         "pi_old's per-token entropy", missing_old_hint),
        (traits.needs_old_second_term, "old_second_term", old_second_term,
         "pi_old's per-token second term sum_x p_x^2 (ln p_x + H)", missing_old_hint),
    )  # fmt: skip
    for wanted, key, value, what, hint in needed:
        if not wanted:
            continue
        if value is None:
            raise RuntimeError(
                f"loss {loss!r} needs {what}, which did not reach it"
                + (f": {hint}" if hint else "")
            )
        out[key] = value.detach()
    return out

"""Helpers of the loss tests: what a test must pass to call any registered loss."""

from __future__ import annotations

from typing import Any

import torch

from flexent.losses import loss_traits


def supplied_params(name: str, like: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """The parameters an adapter supplies to loss ``name``, by its traits (never its name):
    a seeded generator, and/or a per-token entropy shaped like ``like`` ``[B, T]`` (positive,
    distinct values so quantiles split the tokens; pi_old's the same values), pi_old's second
    term."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    traits = loss_traits(name)
    if traits.needs_generator:
        out["generator"] = g
    ent = torch.rand(like.shape, generator=torch.Generator().manual_seed(seed + 1))
    if traits.needs_entropy:
        out["entropy"] = ent
    if traits.needs_old_entropy:  # the same values: erc's entropy ratio is then 1
        out["old_entropy"] = ent.clone()
    if traits.needs_old_second_term:
        out["old_second_term"] = torch.rand(
            like.shape, generator=torch.Generator().manual_seed(seed + 2)
        )
    return out

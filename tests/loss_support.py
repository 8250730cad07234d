"""Helpers of the loss tests: what a test must pass to call any registered loss."""

from __future__ import annotations

from typing import Any

import torch

from flexent.losses import loss_traits


def supplied_params(name: str, seed: int = 0) -> dict[str, Any]:
    """The parameters an adapter supplies to loss ``name``, by its traits (never its name)."""
    if loss_traits(name).needs_generator:
        return {"generator": torch.Generator().manual_seed(seed)}
    return {}

"""The one masked reduction shared by the losses' metrics, the diagnostics and the adapters.

>>> import torch
>>> masked_mean(torch.tensor([[1.0, 3.0, float("nan")]]), torch.tensor([[1, 1, 0]]))
tensor(2.)
>>> masked_mean(torch.tensor([[5.0]]), torch.tensor([[False]]))   # nothing valid: 0, not NaN
tensor(0.)
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (bool, or numeric with valid ``> 0``), any matching
    shape -> 0-dim; 0 when nothing is valid.

    Masked positions are selected away, not multiplied by 0, so NaN/inf there do not leak into
    the value or the gradient. The gradient to ``values`` is kept: detach for a metric.
    """
    valid = mask if mask.dtype == torch.bool else mask > 0
    total = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return total.sum() / valid.sum().to(values.dtype).clamp(min=1.0)

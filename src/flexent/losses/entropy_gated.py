"""Losses and masks that treat tokens by their entropy: Archer's entropy-dependent clip, and the
high-entropy-minority mask (train only on the top entropy quantile).

- ``archer`` (ArcherCodeR, arXiv 2507.15778; wizard-III/ArcherCodeR ``dp_actor.py`` and
  ``core_algos.compute_policy_loss``, ``use_token_entropy_separate``): per sequence, tokens whose
  entropy is above the ``quantile`` (0.8) of that sequence's valid tokens get the wider clip
  band ``eps_high_entropy`` (0.5 on both sides); the others keep ``eps_low`` / ``eps_high`` (so
  the strategy's thresholds still act on them); the dual clip ``clip_c`` (3) caps A < 0 tokens.
  The entropy is the current policy's per-token entropy (detached), as in their actor. Not
  reproduced: their KL loss that skips high-entropy tokens (a KL term outside the policy loss).
- :func:`high_entropy_mask` (arXiv 2506.01939; TRL's ``top_entropy_quantile``): tokens at or
  above the ``1 - top`` quantile of the batch's valid-token entropies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike
from flexent.losses.clip import ppo_clip
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean


def sequence_quantile_mask(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """Bool ``[B, T]``: valid tokens whose entropy is above their own sequence's ``quantile``
    (``torch.nanquantile`` over the sequence's valid tokens, linear interpolation, as Archer).

    >>> h = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]])
    >>> sequence_quantile_mask(h, torch.ones(1, 5, dtype=torch.bool), 0.8).tolist()  # q80 = 0.42
    [[False, False, False, False, True]]
    """
    valid = mask if mask.dtype == torch.bool else mask > 0
    h = torch.where(
        valid, entropy.detach().float(), torch.full_like(entropy, math.nan, dtype=torch.float32)
    )
    q = torch.nanquantile(h, quantile, dim=-1, keepdim=True)
    return valid & (h > q)


def high_entropy_mask(entropy: Tensor, mask: Tensor, top: float) -> Tensor:
    """Bool ``[B, T]``: valid tokens with entropy at or above the ``1 - top`` quantile of all
    valid tokens of the batch (``top`` = 0.2 keeps the top 20 %; TRL's rule, one process).

    >>> h = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]])
    >>> high_entropy_mask(h, torch.ones(1, 5), 0.2).tolist()  # 0.8 quantile = 0.42
    [[False, False, False, False, True]]
    """
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top_entropy_quantile must lie in (0, 1], got {top!r}")
    valid = mask if mask.dtype == torch.bool else mask > 0
    values = entropy.detach().float()[valid]
    if values.numel() == 0:
        return torch.zeros_like(valid)
    threshold = torch.quantile(values, 1.0 - top)
    return valid & (entropy.detach().float() >= threshold)


@register_policy_loss("archer", needs_entropy=True)
def archer(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    entropy: Tensor | None = None,
    quantile: float = 0.8,
    eps_high_entropy: float = 0.5,
    clip_c: float | None = 3.0,
) -> LossOutput:
    """PPO clip with a wider band (``eps_high_entropy`` both sides) on each sequence's tokens
    above its entropy ``quantile`` (module docstring). ``entropy``: the current policy's
    per-token entropy ``[B, T]`` (the adapters pass it: the loss's ``needs_entropy`` trait).
    Metrics: ppo_clip's, plus ``archer/frac_high_entropy``.

    >>> lp = torch.log(torch.tensor([[1.4, 1.4]]))  # r = 1.4 on both tokens, A = +1
    >>> out = archer(lp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2),
    ...              entropy=torch.tensor([[0.1, 0.9]]), quantile=0.5)
    >>> [round(v, 4) for v in out.per_token_loss[0].tolist()]  # 1.2 clipped, 1.4 inside 1.5
    [-1.2, -1.4]
    """
    if entropy is None:
        raise ValueError("archer needs entropy= (the current policy's per-token entropy [B, T])")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile!r}")
    if isinstance(eps_high_entropy, bool) or not 0.0 < float(eps_high_entropy) < 1.0:
        raise ValueError(f"eps_high_entropy must lie in (0, 1), got {eps_high_entropy!r}")
    if entropy.shape != logprobs.shape:
        raise ValueError(
            f"entropy shape {tuple(entropy.shape)} != logprobs shape {tuple(logprobs.shape)}"
        )
    high = sequence_quantile_mask(entropy, mask, quantile)
    dtype = torch.promote_types(logprobs.dtype, torch.float32)
    wide = torch.tensor(float(eps_high_entropy), dtype=dtype, device=logprobs.device)

    def band(eps: EpsLike) -> Tensor:
        base = eps if isinstance(eps, Tensor) else torch.tensor(float(eps), dtype=dtype)
        return torch.where(high, wide, base.to(dtype=dtype, device=logprobs.device))

    out = ppo_clip(logprobs, old_logprobs, advantages, mask, eps_low=band(eps_low),
                   eps_high=band(eps_high), clip_c=clip_c)  # fmt: skip
    out.metrics["archer/frac_high_entropy"] = masked_mean(high.to(dtype), mask > 0)
    return out

"""Reduction of a per-token loss to a scalar, and the entropy bonus.

One function owns every normalisation, so switching mode is one string (verl's ``agg_loss``
names). All modes ignore masked tokens exactly (``torch.where``, so NaN/inf padding cannot leak)
and return 0, not NaN, when nothing is valid.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def aggregate(
    per_token_loss: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    norm_const: float | None = None,
    num_tokens: Tensor | float | None = None,
    num_seqs: Tensor | float | None = None,
) -> Tensor:
    """Reduce ``per_token_loss`` ``[B, T]`` over ``mask`` ``[B, T]`` to a 0-dim tensor.

    - ``token-mean``: sum over all valid tokens / number of valid tokens (DAPO; every token
      weighs the same, so long responses weigh more).
    - ``seq-mean-token-mean``: mean over each sequence's valid tokens, then mean over the
      sequences that have any (GRPO's original; every response weighs the same).
    - ``seq-mean-token-sum``: sum over each sequence, mean over non-empty sequences.
    - ``seq-mean-token-sum-norm``: ``seq-mean-token-sum / norm_const`` with a constant
      ``norm_const`` (default ``T``, the padded length): Dr. GRPO's length-unbiased loss.
      Keep ``norm_const`` fixed across steps (e.g. the max response length) so that the scale
      does not change with the batch's padding.

    Sequences with no valid token are excluded from the sequence means (as in verl).
    ``num_tokens`` (token-mean) / ``num_seqs`` (the seq-* modes) replace the local counts in the
    denominator, for engines that normalise by a larger batch than the one at hand: DAPO's
    token count of the whole generation batch, or every sequence of the micro-batch, empty ones
    included (TRL's ``grpo``, ``dr_grpo`` and ``luspo`` take the plain mean over sequences).

    >>> import torch
    >>> loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[1, 1, 1], [1, 0, 0]]).bool()
    >>> [round(float(aggregate(loss, mask, m)), 4) for m in AGG_MODES]
    [2.5, 3.0, 5.0, 1.6667]
    >>> round(float(aggregate(loss, mask, "seq-mean-token-sum", num_seqs=4)), 4)   # (6 + 4) / 4
    2.5
    """
    if per_token_loss.shape != mask.shape or per_token_loss.dim() != 2:
        raise ValueError(
            f"per_token_loss {tuple(per_token_loss.shape)} and mask {tuple(mask.shape)} "
            "must both be [B, T]"
        )
    valid = mask if mask.dtype == torch.bool else mask != 0
    loss = torch.where(valid, per_token_loss, torch.zeros_like(per_token_loss))
    if mode == "token-mean":
        if num_tokens is not None:
            return loss.sum() / num_tokens
        return loss.sum() / valid.sum().clamp(min=1).to(loss.dtype)
    if mode not in AGG_MODES:
        raise ValueError(f"unknown aggregation mode {mode!r}; valid modes: {', '.join(AGG_MODES)}")
    counts = valid.sum(-1).to(loss.dtype)
    seq = loss.sum(-1)
    if mode == "seq-mean-token-mean":
        seq = seq / counts.clamp(min=1)
    if num_seqs is None:
        num_seqs = (counts > 0).sum().clamp(min=1).to(loss.dtype)
    out = seq.sum() / num_seqs
    if mode == "seq-mean-token-sum-norm":
        const = float(loss.shape[-1]) if norm_const is None else norm_const
        if isinstance(const, bool) or not isinstance(const, (int, float)):
            raise ValueError(f"norm_const must be a positive float, got {norm_const!r}")
        if not (math.isfinite(const) and const > 0):
            raise ValueError(f"norm_const must be a positive finite float, got {norm_const!r}")
        out = out / const
    return out


def entropy_bonus(per_token_loss: Tensor, entropy: Tensor, coef: float) -> Tensor:
    """``per_token_loss - coef * entropy``, both ``[B, T]``: aggregated with the same mode this is
    the loss minus ``coef`` times the (aggregated) mean entropy. ``entropy`` keeps its gradient.

    >>> import torch
    >>> out = entropy_bonus(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 1.0]]), 0.1)
    >>> [round(v, 4) for v in out[0].tolist()]
    [0.95, 1.9]
    """
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not math.isfinite(coef):
        raise ValueError(f"entropy coef must be a finite float, got {coef!r}")
    if entropy.shape != per_token_loss.shape:
        raise ValueError(
            f"entropy shape {tuple(entropy.shape)} != per_token_loss shape "
            f"{tuple(per_token_loss.shape)}"
        )
    return per_token_loss - coef * entropy

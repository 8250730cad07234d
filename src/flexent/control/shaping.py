"""Advantage shaping: how the loss-weight controllers (EntroPIC, AEPO, REPO-R) act on a step.

Three of the peer entropy controllers act on the policy-gradient weights of tokens rather than on
the clip bounds or an entropy bonus. Each is a pure function of the step's advantages and the
log-probabilities, with a few per-step numbers that its strategy fixes once per optimizer step
(:meth:`flexent.strategies.Strategy.shaping`):

- ``entropic`` (EntroPIC, arXiv 2511.15248; yk7333/EntroPIC ``compute_policy_loss_entropic``):
  tokens whose current probability is above ``p_high`` have their weight scaled by
  ``1 - alpha`` when A > 0 and ``1 + alpha`` when A < 0 (alpha in [-1, 1] from the PI
  controller, > 0 when entropy is below target: positive high-probability tokens lower
  entropy, so they are slowed). EntroPIC adds ``-alpha_E * mean_M(r |A|)`` over those tokens
  M, unclipped, to the PPO loss (alpha_E = -alpha); flexent scales their advantage inside the
  loss instead (so the clip applies) and without EntroPIC's factor N_tokens / N_M.
- ``aepo`` (AEPO, QwenLong-L1.5): while ``gate`` is 1, every A < 0 token is dropped (weight 0);
  at ``gate`` 0 nothing changes.
- ``repo_r`` (REPO-R, arXiv 2603.11682 App. D.2, SkyRL PR 1896): with ``logp`` the current
  policy's (detached) log-probability of the token, ``A (1 - zeta logp)`` clamped to >= 0 for
  A > 0 and ``A (1 + zeta logp)`` clamped to <= 0 for A < 0.

Weighting a token's advantage by w >= 0 is weighting its clipped-surrogate loss by w (the PPO
surrogate is linear in A for a given sign), so every shaping is an advantage transform applied
before the loss. That holds for the losses whose advantage enters per token (the
``per_token_advantage`` trait; ``gmpo`` averages A over the sequence and is refused with these
controllers, :class:`flexent.control.EntropyControl`).

>>> import torch
>>> a = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
>>> lp = torch.log(torch.tensor([[0.99, 0.5, 0.99, 0.5]]))
>>> shape_advantages("entropic", {"alpha": 0.5, "p_high": 0.95}, a, logprobs=lp).tolist()
[[0.5, 1.0, -1.5, -1.0]]
>>> shape_advantages("aepo", {"gate": 1.0}, a, logprobs=lp).tolist()
[[1.0, 1.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

ShapeFn = Callable[..., torch.Tensor]


def _entropic(advantages: torch.Tensor, logprobs: torch.Tensor, *, alpha: float,
              p_high: float) -> torch.Tensor:  # fmt: skip
    high = logprobs > math.log(p_high)
    scale = torch.where(advantages > 0, 1.0 - alpha, 1.0 + alpha)
    return torch.where(high & (advantages != 0), advantages * scale, advantages)


def _aepo(advantages: torch.Tensor, logprobs: torch.Tensor, *, gate: float) -> torch.Tensor:
    if gate == 0.0:
        return advantages
    return torch.where(advantages < 0, torch.zeros_like(advantages), advantages)


def _repo_r(advantages: torch.Tensor, logprobs: torch.Tensor, *, zeta: float) -> torch.Tensor:
    logprobs = logprobs.clamp(min=-20.0)  # as SkyRL's repo_r_rescale_advantages
    pos = (advantages * (1.0 - zeta * logprobs)).clamp(min=0.0)
    neg = (advantages * (1.0 + zeta * logprobs)).clamp(max=0.0)
    return torch.where(advantages > 0, pos, torch.where(advantages < 0, neg, advantages))


SHAPINGS: dict[str, tuple[ShapeFn, tuple[str, ...]]] = {
    "entropic": (_entropic, ("alpha", "p_high")),
    "aepo": (_aepo, ("gate",)),
    "repo_r": (_repo_r, ("zeta",)),
}


def shape_advantages(
    kind: str,
    params: Mapping[str, float],
    advantages: torch.Tensor,
    *,
    logprobs: torch.Tensor,
) -> torch.Tensor:
    """``advantages`` ``[B, T]`` shaped by ``kind`` with the step's ``params``; ``logprobs``
    ``[B, T]`` are the current policy's (used detached). Unknown kinds or parameters raise."""
    try:
        fn, names = SHAPINGS[kind]
    except KeyError:
        raise ValueError(f"unknown advantage shaping {kind!r}; valid: {sorted(SHAPINGS)}") from None
    if set(params) != set(names):
        raise ValueError(f"shaping {kind!r} takes {list(names)}, got {sorted(params)}")
    kwargs = {k: float(params[k]) for k in names}
    return fn(advantages, logprobs.detach().to(advantages.dtype), **kwargs)

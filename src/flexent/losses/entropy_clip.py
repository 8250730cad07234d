"""Losses that drop tokens' gradients by an entropy signal of pi_old or of the update.

- ``clip_b`` and ``clip_v``: entropy-discriminator clipping (Wang et al. 2026, "On the Entropy
  Dynamics in Reinforcement Fine-Tuning of Large Language Models", arXiv 2602.03392). Updating
  the logit of the sampled token k by ``eps`` changes the entropy by ``-eps S + O(eps^2)``, with
  the discriminator ``S = p_k (H + ln p_k)``; under GRPO the change of a token with advantage A
  is ``-A (S - E_{x~p}[p_x (H + ln p_x)])`` to first order. Negative-advantage tokens with a very
  negative signal lower the entropy most, so both rules drop them (keep every A >= 0 token):
  ``clip_b`` centres S on its batch mean, ``clip_v`` on its vocabulary expectation. As the
  authors' code computes it: hiyuchang/Trinity-RFT at eedef4b (merged upstream as
  agentscope-ai/Trinity-RFT #509), ``trinity/algorithm/advantage_fn/clipb_advantage.py``
  (``ClipBAdvantageFn``), ``clipv_advantage.py`` (``ClipVAdvantageFn``) and
  ``examples/entropy/clipv_dp_actor.py`` (``compute_N_from_logits``), on top of Trinity's
  ``ppo`` policy loss (``trinity/algorithm/policy_loss_fn/ppo_policy_loss.py``: clip 0.2, dual
  clip 3, token-mean); defaults from ``examples/entropy/clipb.yaml`` / ``clipv.yaml``.
- ``erc``: Entropy Ratio Clipping (Su et al. 2025, arXiv 2512.05591), as Kwai-Klear/ERC at
  f1885c5 computes it (``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss_grpo_erc``;
  band and PPO settings from ``recipe/dapo/perf_run_dapo_ours_math_szp_ae_dapo_erc_1_05.sh``):
  the PPO clip (with dual clip), whose per-token loss keeps its value but loses its gradient
  where the entropy ratio ``H / H_old`` leaves the open band ``(1 - eps_l, 1 + eps_h)``.

Departures shared by ``clip_b`` and ``clip_v``: (1) the authors filter once per training step,
in the advantage function, over the whole step's batch; here the mean, standard deviation and
Clip_V's cap are over the valid tokens of each loss call (one micro-batch on one process);
the signals are pi_old's in both, so the drop set does not change as the policy moves within
the step. (2) They remove dropped tokens from ``response_mask``, so the token-mean denominator
shrinks with them; here the dropped tokens' loss and gradient are 0 and they still count in the
aggregation's denominator (the loss scale differs by the dropped fraction, reported as
``clip_b/frac_dropped`` / ``clip_v/frac_dropped``: about 1e-4 for ``clip_v`` by its cap).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flexent.losses._common import EpsLike
from flexent.losses.clip import ppo_clip
from flexent.losses.registry import LossOutput, register_policy_loss
from flexent.masked import masked_mean

# Below this standard deviation the signal is flat and no token is dropped (the authors' 1e-12).
FLAT_STD = 1e-12
# Added to both entropies of the ERC ratio (the authors' 1e-8).
ERC_TINY = 1e-8


def _signal(name: str, loss: str, value: Tensor | None, like: Tensor, what: str) -> Tensor:
    """``value`` detached in the compute dtype, after checking it was given with ``like``'s
    shape (masked positions may hold anything: callers select them away)."""
    if value is None:
        raise ValueError(f"{loss} needs {name}= ({what} [B, T])")
    if value.shape != like.shape:
        raise ValueError(f"{name} shape {tuple(value.shape)} != logprobs shape {tuple(like.shape)}")
    return value.detach().to(torch.promote_types(like.dtype, torch.float32))


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


def discriminator(old_logprobs: Tensor, old_entropy: Tensor, valid: Tensor) -> Tensor:
    """``S = p (H + ln p)`` per token from pi_old's log-prob and entropy, 0 on masked tokens
    (and where ``p`` underflows to 0: the limit of ``p ln p``).

    >>> lp = torch.log(torch.tensor([[0.5, 0.25]]))
    >>> discriminator(lp, torch.tensor([[1.0, 1.0]]), torch.ones(1, 2, dtype=torch.bool))
    tensor([[ 0.1534, -0.0966]])
    """
    zero = old_logprobs.new_zeros(())
    lp = torch.where(valid, old_logprobs, zero)
    h = torch.where(valid, old_entropy, zero)
    p = lp.exp()
    return torch.where(valid & (p > 0), p * (h + lp), zero)


def _moments(x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(n, mean, population variance)`` of ``x`` over the valid tokens, as the authors write
    them (``x`` is 0 on masked tokens): ``n`` clamped to at least 1."""
    n = valid.sum().to(x.dtype).clamp(min=1.0)
    mean = x.sum() / n
    zero = x.new_zeros(())
    var = torch.where(valid, (x - mean) ** 2, zero).sum() / n
    return n, mean, var


def _drop(base: LossOutput, drop: Tensor) -> Tensor:
    """The base per-token loss with the dropped tokens' value and gradient set to 0."""
    loss = base.per_token_loss
    return torch.where(drop, loss.new_zeros(()), loss)


@register_policy_loss("clip_b", needs_old_entropy=True, default_agg="token-mean")
def clip_b(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    old_entropy: Tensor | None = None,
    mu: float = 2.5,
    clip_c: float | None = 3.0,
) -> LossOutput:
    """Clip_B: the PPO clip (:func:`ppo_clip` with ``clip_c``), with the A < 0 tokens whose
    entropy discriminator lies far below the batch mean dropped (loss and gradient 0):

        S      = p_old (H_old + ln p_old)             (pi_old's, per token)
        m, s   = mean and population std of S over the valid tokens
        drop   = A < 0  and  S - m < -mu s            (nothing is dropped when s < 1e-12)

    Such tokens are the low-probability ones (``ln p_old`` well below ``-H_old``); pushing them
    down concentrates the distribution, the largest entropy decreases of the batch. ``old_entropy``:
    pi_old's per-token entropy ``[B, T]`` (the adapters pass it: the ``needs_old_entropy``
    trait). Defaults: ``mu`` 2.5 (``clipb.yaml``), clip 0.2 / 0.2 and dual clip 3 (Trinity's
    ``ppo`` loss), token-mean (declared ``default_agg``). The authors read ``p_old`` from the
    rollout engine's log-probs (``rollout_log_probs``); here from ``old_logprobs`` (pi_old as
    the trainer computes it; the same policy up to engine numerics). Other departures: the
    module docstring. Metrics: ppo_clip's, ``clip_b/frac_dropped`` (over valid tokens),
    ``clip_b/frac_dropped_neg`` (over valid A < 0 tokens), ``clip_b/s_mean``, ``clip_b/s_var``
    (the authors' ``ES``, ``varS``).

    >>> lp = torch.log(torch.tensor([[0.9, 0.9, 0.9, 0.9, 0.001]]))
    >>> h = torch.full((1, 5), 0.5)  # S = 0.9 (0.5 + ln 0.9) = 0.355 four times, -0.0064 once
    >>> out = clip_b(lp, lp, torch.tensor([-1.0]), torch.ones(1, 5), old_entropy=h, mu=1.5)
    >>> out.per_token_loss[0].tolist()  # the last token's z = -2 s < -1.5 s: dropped
    [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    mu = _check_positive("mu", mu)
    h_old = _signal("old_entropy", "clip_b", old_entropy, logprobs, "pi_old's per-token entropy")
    base = ppo_clip(logprobs, old_logprobs, advantages, mask, eps_low=eps_low,
                    eps_high=eps_high, clip_c=clip_c)  # fmt: skip
    valid = mask if mask.dtype == torch.bool else mask != 0
    s = discriminator(old_logprobs.detach().to(h_old.dtype), h_old, valid)
    _, mean, var = _moments(s, valid)
    std = var.sqrt()
    neg = valid & _advantages(advantages, logprobs, h_old.dtype).lt(0)
    drop = neg & ((s - mean) < -(mu * std)) & (std >= FLAT_STD)
    metrics = dict(base.metrics)
    metrics["clip_b/frac_dropped"] = masked_mean(drop.to(s.dtype), valid)
    metrics["clip_b/frac_dropped_neg"] = masked_mean(drop.to(s.dtype), neg)
    metrics["clip_b/s_mean"] = mean
    metrics["clip_b/s_var"] = var
    return LossOutput(_drop(base, drop), metrics)


@register_policy_loss(
    "clip_v", needs_old_entropy=True, needs_old_second_term=True, default_agg="token-mean"
)
def clip_v(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.2,
    old_entropy: Tensor | None = None,
    old_second_term: Tensor | None = None,
    mu: float = 8.5,
    max_frac: float = 1e-4,
    clip_c: float | None = 3.0,
) -> LossOutput:
    """Clip_V: the PPO clip (:func:`ppo_clip` with ``clip_c``), with the A < 0 tokens whose
    discriminator lies far below its expectation over the vocabulary dropped (loss and gradient
    0), at most a fraction ``max_frac`` of the valid tokens:

        S      = p_old (H_old + ln p_old)                 (the sampled token's, pi_old's)
        N      = sum_x p_x^2 (ln p_x + H_old)             (= E_{x~p_old}[S_x]: old_second_term)
        D      = N - S;  s = population std of D over the valid tokens
        over   = A < 0  and  D > mu s                     (nothing when s < 1e-12)
        K      = max(floor(max_frac n), 1)                (n = number of valid tokens)
        drop   = over, if it has at most K tokens; else its K tokens of largest D

    ``D`` is the sampled token's shortfall from the policy-average discriminator, the quantity
    the paper's first-order GRPO entropy change multiplies by ``-A`` (Theorem 3.3). ``old_entropy``
    and ``old_second_term`` ``[B, T]`` are pi_old's (the adapters pass them: the
    ``needs_old_entropy`` and ``needs_old_second_term`` traits); the authors' ``necs`` is
    ``old_second_term`` (``compute_N_from_logits``: ``H sum p^2 + sum p^2 ln p``). Defaults:
    ``mu`` 8.5 and ``max_frac`` 1e-4 (``clipv.yaml`` and ``default_args``; the class's own
    ``mu`` default, 2.0, is not what the example runs), clip 0.2 / 0.2 and dual clip 3
    (Trinity's ``ppo`` loss), token-mean (declared ``default_agg``). The authors' mask also
    removes A = 0 tokens with ``D > mu s``; their loss and gradient are 0 either way, so only
    A < 0 tokens are dropped (and counted) here. Other departures: the module docstring.
    Metrics: ppo_clip's, ``clip_v/frac_dropped`` (over valid tokens), ``clip_v/frac_over``
    (the A < 0 tokens above the threshold before the cap, over valid tokens),
    ``clip_v/d_std`` (the authors' ``stdD``).

    >>> lp = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5]]))
    >>> h = torch.full((1, 5), 1.0)             # S = 0.5 (1 + ln 0.5) = 0.1534 on every token
    >>> n = torch.tensor([[0.1534, 0.1534, 0.1534, 0.1534, 0.6534]])  # D = 0 four times, 0.5
    >>> out = clip_v(lp, lp, torch.tensor([-1.0]), torch.ones(1, 5), old_entropy=h,
    ...              old_second_term=n, mu=1.5, max_frac=0.2)
    >>> out.per_token_loss[0].tolist()          # D = 0.5 > 1.5 s = 0.3: dropped (K = 1)
    [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    mu = _check_positive("mu", mu)
    max_frac = _check_positive("max_frac", max_frac)
    if max_frac > 1.0:
        raise ValueError(f"max_frac must lie in (0, 1], got {max_frac!r}")
    what = "pi_old's per-token entropy"
    h_old = _signal("old_entropy", "clip_v", old_entropy, logprobs, what)
    n_old = _signal("old_second_term", "clip_v", old_second_term, logprobs,
                    "pi_old's per-token sum_x p_x^2 (ln p_x + H)")  # fmt: skip
    base = ppo_clip(logprobs, old_logprobs, advantages, mask, eps_low=eps_low,
                    eps_high=eps_high, clip_c=clip_c)  # fmt: skip
    valid = mask if mask.dtype == torch.bool else mask != 0
    s = discriminator(old_logprobs.detach().to(h_old.dtype), h_old, valid)
    d = torch.where(valid, n_old - s, s.new_zeros(()))
    count, _, var = _moments(d, valid)
    std = var.sqrt()
    neg = valid & _advantages(advantages, logprobs, d.dtype).lt(0)
    over = neg & (d > mu * std) & (std >= FLAT_STD)
    k = max(int(max_frac * float(count)), 1)
    n_over = int(over.sum())
    if n_over <= k:
        drop = over
    else:
        scores = d.masked_fill(~over, -math.inf).reshape(-1)
        flat = torch.zeros_like(scores, dtype=torch.bool)
        flat[torch.topk(scores, k, largest=True).indices] = True
        drop = flat.view_as(d)
    metrics = dict(base.metrics)
    metrics["clip_v/frac_dropped"] = masked_mean(drop.to(d.dtype), valid)
    metrics["clip_v/frac_over"] = masked_mean(over.to(d.dtype), valid)
    metrics["clip_v/d_std"] = std
    return LossOutput(_drop(base, drop), metrics)


@register_policy_loss("erc", needs_entropy=True, needs_old_entropy=True, default_agg="token-mean")
def erc(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: EpsLike = 0.2,
    eps_high: EpsLike = 0.28,
    entropy: Tensor | None = None,
    old_entropy: Tensor | None = None,
    entropy_eps_low: float = 0.05,
    entropy_eps_high: float = 0.05,
    clip_c: float | None = 10.0,
) -> LossOutput:
    """ERC: the PPO clip (:func:`ppo_clip` with ``clip_c``), whose per-token loss keeps its
    value but loses its gradient where the entropy ratio leaves an open band:

        rho  = (H + 1e-8) / (H_old + 1e-8)                (per token)
        loss = ppo_clip loss               where 1 - entropy_eps_low < rho < 1 + entropy_eps_high
             = sg(ppo_clip loss)           otherwise

    ``entropy``: the current policy's per-token entropy, ``old_entropy``: pi_old's, both
    ``[B, T]`` (the adapters pass them: the ``needs_entropy`` and ``needs_old_entropy``
    traits). The band is applied on top of the PPO clip and its dual clip, as in the authors'
    ``grpo_erc`` (their ``gppo_erc``, the same band on GPPO, is not reproduced). Defaults from
    their DAPO recipe: band (0.95, 1.05), clip 0.2 / 0.28, ``clip_c`` 10, token-mean (declared
    ``default_agg``). Not reproduced: their optional truncated importance sampling against the
    rollout log-probs (``tis_imp_ratio_cap``, off in the recipe). Metrics: ppo_clip's,
    ``erc/frac_in_band`` (valid tokens inside the band: the authors' ``entropy_frac``) and
    ``erc/ratio_mean`` (mean rho over valid tokens).

    >>> lp = torch.log(torch.tensor([[0.5, 0.5]]))   # r = 1 against itself, A = +1
    >>> out = erc(lp, lp, torch.tensor([1.0]), torch.ones(1, 2),
    ...           entropy=torch.tensor([[1.0, 1.2]]), old_entropy=torch.tensor([[1.0, 1.0]]))
    >>> out.per_token_loss[0].tolist(), float(out.metrics["erc/frac_in_band"])  # rho 1, 1.2
    ([-1.0, -1.0], 0.5)
    """
    low = _check_positive("entropy_eps_low", entropy_eps_low)
    high = _check_positive("entropy_eps_high", entropy_eps_high)
    if low > 1.0:
        raise ValueError(f"entropy_eps_low must lie in (0, 1], got {entropy_eps_low!r}")
    h = _signal("entropy", "erc", entropy, logprobs, "the current policy's per-token entropy")
    h_old = _signal("old_entropy", "erc", old_entropy, logprobs, "pi_old's per-token entropy")
    base = ppo_clip(logprobs, old_logprobs, advantages, mask, eps_low=eps_low,
                    eps_high=eps_high, clip_c=clip_c)  # fmt: skip
    valid = mask if mask.dtype == torch.bool else mask != 0
    rho = (h + ERC_TINY) / (h_old + ERC_TINY)
    in_band = valid & (rho > 1.0 - low) & (rho < 1.0 + high)
    loss = base.per_token_loss
    metrics = dict(base.metrics)
    metrics["erc/frac_in_band"] = masked_mean(in_band.to(rho.dtype), valid)
    metrics["erc/ratio_mean"] = masked_mean(rho, valid)
    return LossOutput(torch.where(in_band, loss, loss.detach()), metrics)


def _advantages(advantages: Tensor, like: Tensor, dtype: torch.dtype) -> Tensor:
    """``advantages`` (``[B]`` or ``[B, T]``, checked by ``ppo_clip``) broadcast to ``like``'s
    shape, detached, for sign tests."""
    adv = advantages.detach().to(dtype)
    return (adv.unsqueeze(-1) if adv.dim() == 1 else adv).expand(like.shape)

"""Entropy diagnostics: per-token entropy from logits and the four entropy regions
(docs/method.md §2).

Pure torch: tensors and keyword scalars in, tensors out (metrics are 0-dim tensors), no
``.item()``, no global state. Every metric key is described in docs/metrics.md.

Regions. A gradient step on the surrogate r * A of one sampled token a of a softmax policy
p = softmax(z) changes the entropy H = -sum_x p_x ln p_x, to first order, in proportion to

    -A * [ p_a (ln p_a + H) - sum_x p_x^2 (ln p_x + H) ]

The first ("token") term fixes the sign in practice: with surprisal -ln p_a below H the token is
*expected*, above H *surprising*, giving E1 (expected, A > 0: H down), E2 (surprising, A > 0:
H up), E3 (expected, A < 0: H up), E4 (surprising, A < 0: H down). Scheme ``theory`` classifies
by surprisal vs H of pi_old (surprisal == H counts as expected); scheme ``empirical`` uses the
paper's p_old > 0.7 (high, "expected") and p_old <= 0.3 (low, "surprising"); tokens in between,
tokens with A == 0 and masked tokens belong to no region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flexent.losses import out_of_band, prepare
from flexent.masked import masked_mean

REGIONS = ("E1", "E2", "E3", "E4")
SCHEMES = {"theory": "region", "empirical": "region_emp"}
# The tokens each per-region metric of region_stats is a mean over: the region's own ("region")
# or all valid tokens ("valid"); see region_token_weights.
REGION_MEAN_OVER = {
    "share": "valid",
    "clip_frac": "region",
    "ratio_mean": "region",
    "pred_dH": "valid",
    "pred_dH_clipped": "valid",
    "pred_dH_full": "valid",
    "pred_dH_full_clipped": "valid",
}


def _rows_entropy(x: Tensor, *, with_second: bool = False) -> tuple[Tensor, Tensor | None]:
    """Entropy of softmax rows ``x [N, V]`` -> ``[N]`` (and sum_x p^2 (ln p + H) if asked).

    A row of all -inf has entropy 0; -inf entries contribute 0 (no NaN, also in backward).
    """
    logz = torch.logsumexp(x, dim=-1, keepdim=True)
    logz = logz.masked_fill(torch.isneginf(logz), 0.0)
    logp = x - logz
    p = logp.exp()
    if with_second or (torch.is_grad_enabled() and x.requires_grad):
        logp = logp.nan_to_num(nan=float("nan"), neginf=0.0)
        plogp = p * logp
        ent = -plogp.sum(-1)
        if not with_second:
            return ent, None
        second = (p * plogp).sum(-1) + ent * (p * p).sum(-1)
        return ent, second
    # grad-free fast path: two [N, V] temporaries instead of four
    return -p.mul_(logp.nan_to_num_(nan=float("nan"), neginf=0.0)).sum(-1), None


def _chunked(logits: Tensor, chunk_size: int, with_second: bool) -> tuple[Tensor, Tensor | None]:
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(
            f"logits must have a non-empty vocabulary dim [..., V], got {tuple(logits.shape)}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    flat = logits.reshape(-1, logits.shape[-1])
    ents, seconds = [], []
    for start in range(0, flat.shape[0], chunk_size):
        ent, second = _rows_entropy(
            flat[start : start + chunk_size].to(dtype), with_second=with_second
        )
        ents.append(ent)
        if second is not None:
            seconds.append(second)
    shape = logits.shape[:-1]
    ent = torch.cat(ents).reshape(shape) if ents else flat.new_zeros(shape, dtype=dtype)
    if not with_second:
        return ent, None
    second = torch.cat(seconds).reshape(shape) if seconds else torch.zeros_like(ent)
    return ent, second


def token_entropy(logits: Tensor, chunk_size: int = 1024) -> Tensor:
    """Per-token entropy (nats) of ``softmax(logits)``: ``[B, T, V] -> [B, T]`` (any ``[..., V]``).

    Works through ``chunk_size`` tokens at a time in float32 (float64 stays float64), so the
    extra memory is a few ``[chunk_size, V]`` buffers, never a full softmax copy of the input.
    -inf logits (a masked vocabulary) contribute 0; a row that is all -inf has entropy 0.
    Differentiable. Equals ``torch.distributions.Categorical(logits=logits).entropy()``.

    >>> token_entropy(torch.zeros(1, 2, 4))  # uniform over 4 tokens: ln 4
    tensor([[1.3863, 1.3863]])
    >>> token_entropy(torch.tensor([[0.0, 0.0, float("-inf")]]))  # ln 2
    tensor([0.6931])
    """
    return _chunked(logits, chunk_size, with_second=False)[0]


def entropy_second_term(logits: Tensor, chunk_size: int = 1024) -> Tensor:
    """``sum_x p_x^2 (ln p_x + H)`` per token, ``[B, T, V] -> [B, T]``: the distribution-wide
    part of the first-order entropy change (docs/method.md §2), chunked like
    :func:`token_entropy`."""
    second = _chunked(logits, chunk_size, with_second=True)[1]
    assert second is not None
    return second


def entropy_stats(entropy: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """``entropy/mean``, ``entropy/std``, ``entropy/min``, ``entropy/max`` over valid tokens.

    ``entropy [B, T]`` (nats), ``mask [B, T]`` (bool or 0/1). All 0 when no token is valid;
    masked positions may hold anything (NaN, inf).

    >>> s = entropy_stats(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[1, 1, 0]]))
    >>> [round(float(s[k]), 3) for k in ("entropy/mean", "entropy/std", "entropy/min", "entropy/max")]
    [2.0, 1.0, 1.0, 3.0]
    """
    _same_shape(entropy=entropy, mask=mask)
    entropy = entropy.detach().to(torch.promote_types(entropy.dtype, torch.float32))
    valid = mask > 0
    entropy = torch.where(valid, entropy, entropy.new_zeros(()))
    mean = masked_mean(entropy, valid)
    var = masked_mean((entropy - mean) ** 2, valid)
    any_valid = valid.any()
    zero = entropy.new_zeros(())
    return {
        "entropy/mean": mean,
        "entropy/std": var.sqrt(),
        "entropy/min": torch.where(
            any_valid, entropy.masked_fill(~valid, float("inf")).min(), zero
        ),
        "entropy/max": torch.where(
            any_valid, entropy.masked_fill(~valid, float("-inf")).max(), zero
        ),
    }


def _same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shape mismatch: {shapes}")


def region_masks(
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    entropy: Tensor | None = None,
    scheme: str = "theory",
    high: float = 0.7,
    low: float = 0.3,
) -> dict[str, Tensor]:
    """Boolean ``[B, T]`` masks of regions E1..E4 (see the module docstring).

    ``old_logprobs``: log pi_old of the sampled tokens; ``advantages``: ``[B, T]`` or ``[B]``;
    ``entropy``: entropy of pi_old at each position (needed for ``scheme="theory"``);
    ``high``/``low``: the empirical scheme's probability cut-offs (p > high, p <= low).
    """
    advantages = _broadcast_advantages(advantages, old_logprobs)
    _same_shape(old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    if scheme == "theory":
        if entropy is None:
            raise ValueError("scheme 'theory' needs entropy= (entropy of pi_old per token [B, T])")
        _same_shape(old_logprobs=old_logprobs, entropy=entropy)
        expected = -old_logprobs <= entropy
        surprising = ~expected
    elif scheme == "empirical":
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(
                f"empirical cut-offs need 0 <= low < high <= 1, got low={low}, high={high}"
            )
        p = old_logprobs.exp()
        expected, surprising = p > high, p <= low
    else:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    valid = mask > 0
    pos, neg = (advantages > 0) & valid, (advantages < 0) & valid
    return {
        "E1": expected & pos,
        "E2": surprising & pos,
        "E3": expected & neg,
        "E4": surprising & neg,
    }


def predicted_entropy_change(
    old_logprobs: Tensor,
    advantages: Tensor,
    *,
    entropy: Tensor,
    second_term: Tensor | None = None,
) -> Tensor:
    """First-order entropy change per token, up to the step size, ``[B, T]``:
    ``-A p_a (ln p_a + H)`` (token term), or the full ``-A [p_a (ln p_a + H) - second_term]``
    when ``second_term`` (:func:`entropy_second_term` of pi_old's logits) is given.

    >>> predicted_entropy_change(torch.tensor([-0.1]), torch.tensor([1.0]), entropy=torch.tensor([0.5]))
    tensor([-0.3619])
    """
    advantages = _broadcast_advantages(advantages, old_logprobs)
    p = old_logprobs.exp()
    term = torch.where(p > 0, p * (old_logprobs + entropy), torch.zeros_like(p))
    if second_term is not None:
        term = term - second_term
    return -advantages * term


def region_stats(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    entropy: Tensor,
    eps_low: Tensor | float,
    eps_high: Tensor | float,
    schemes: str | Sequence[str] = ("theory",),
    old_logits: Tensor | None = None,
    second_term: Tensor | None = None,
    high: float = 0.7,
    low: float = 0.3,
    chunk_size: int = 1024,
) -> dict[str, Tensor]:
    """Per-region metrics (0-dim tensors) for a batch of tokens, all ``[B, T]``.

    ``logprobs``/``old_logprobs``: log pi_theta / log pi_old of the sampled tokens;
    ``advantages`` ``[B, T]`` or ``[B]``; ``entropy``: pi_old's entropy per token;
    ``eps_low``/``eps_high``: the clip band (tensors ``[B, T]`` or floats); ``schemes``: one or
    several of :data:`SCHEMES` (``"theory"``: keys ``region/E1/...``, ``"empirical"``:
    ``region_emp/E1/...``); ``old_logits [B, T, V]`` (pi_old's logits) or ``second_term``
    ``[B, T]`` (their :func:`entropy_second_term`, computed where the logits were) adds
    ``.../pred_dH_full`` and ``.../pred_dH_full_clipped``.

    Per region R: ``share`` = |R| / valid tokens; ``clip_frac`` = fraction of R whose gradient
    the clip removes (:func:`flexent.losses.out_of_band`: A > 0 and r > 1 + eps_high, or A < 0
    and r < 1 - eps_low); ``ratio_mean`` = mean r over R; ``pred_dH`` = sum over R's unclipped
    tokens of the token term of :func:`predicted_entropy_change`, divided by the number of valid
    tokens (so the four regions add up to the whole batch's prediction under token-mean);
    ``pred_dH_clipped`` = the same sum over R's clipped tokens: the entropy change the clip
    removed from R, i.e. its authority over entropy there. Empty regions give 0. Inputs go through :func:`flexent.losses.prepare`, as in every loss: masked
    positions may hold anything (-inf log-probs, NaN entropy) and the log-ratio is clamped, so
    every value is finite.
    """
    names = _check_schemes(schemes)
    with torch.no_grad():
        p = prepare(logprobs.detach(), old_logprobs, advantages, mask, eps_low=eps_low,
                    eps_high=eps_high)  # fmt: skip
        _same_shape(logprobs=logprobs, entropy=entropy)
        zero = p.ratio.new_zeros(())
        old = torch.where(p.mask, old_logprobs.to(p.ratio.dtype), zero)
        entropy = torch.where(p.mask, entropy.to(p.ratio.dtype), zero)
        high_clip, low_clip = out_of_band(p, p.ratio)
        tokens = _Tokens(
            clipped=high_clip | low_clip,
            ratio=p.ratio,
            n_valid=p.mask.sum().to(p.ratio.dtype).clamp(min=1.0),
            dh=predicted_entropy_change(old, p.advantages, entropy=entropy),
            dh_full=_full_prediction(
                old, p.advantages, entropy, p.mask, old_logits, second_term, chunk_size
            ),
        )
        out: dict[str, Tensor] = {}
        for name in names:
            masks = region_masks(
                old, p.advantages, p.mask, entropy=entropy, scheme=name, high=high, low=low
            )
            for region, r_mask in masks.items():
                out.update(_one_region(f"{SCHEMES[name]}/{region}", r_mask, tokens))
    return out


def region_token_weights(stats: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
    """How many tokens each metric of :func:`region_stats` is a mean over (0-dim tensors, same
    keys): the valid tokens of ``mask`` for ``share`` and the ``pred_dH*`` keys, the region's
    own tokens (``share`` times the valid tokens, rounded to the count) for ``clip_frac`` and
    ``ratio_mean``.

    An engine that sees a batch in pieces (verl's micro-batches) gets the value of the whole
    batch as sum(value * weight) / sum(weight) over the pieces (0 when the weights sum to 0, as
    for an empty region).

    >>> stats = {"region/E1/share": torch.tensor(0.25), "region/E1/ratio_mean": torch.tensor(1.1)}
    >>> w = region_token_weights(stats, torch.ones(2, 4, dtype=torch.bool))
    >>> float(w["region/E1/share"]), float(w["region/E1/ratio_mean"])
    (8.0, 2.0)
    """
    n_valid = mask.sum().to(torch.float64)
    out = {}
    for key in stats:
        region, metric = key.rsplit("/", 1)
        over = REGION_MEAN_OVER[metric]
        share = stats[f"{region}/share"].to(torch.float64)
        out[key] = torch.round(n_valid * share) if over == "region" else n_valid
    return out


def _check_schemes(schemes: str | Sequence[str]) -> list[str]:
    names = [schemes] if isinstance(schemes, str) else list(schemes)
    for name in names:
        if name not in SCHEMES:
            raise ValueError(f"unknown region scheme {name!r}; valid: {', '.join(SCHEMES)}")
    return names


@dataclass
class _Tokens:
    """Per-token quantities every region reads, ``[B, T]`` (``n_valid``: 0-dim, >= 1)."""

    clipped: Tensor
    ratio: Tensor
    n_valid: Tensor
    dh: Tensor
    dh_full: Tensor | None


def _full_prediction(
    old: Tensor,
    advantages: Tensor,
    entropy: Tensor,
    valid: Tensor,
    old_logits: Tensor | None,
    second_term: Tensor | None,
    chunk_size: int,
) -> Tensor | None:
    """The full first-order entropy change per token from pi_old's logits or their second term
    (None without either)."""
    if old_logits is not None and second_term is not None:
        raise ValueError("give old_logits or second_term, not both")
    if second_term is not None:
        _same_shape(old_logprobs=old, second_term=second_term)
        second = torch.where(valid, second_term.to(old.dtype), old.new_zeros(()))
        return predicted_entropy_change(old, advantages, entropy=entropy, second_term=second)
    if old_logits is None:
        return None
    if tuple(old_logits.shape[:-1]) != tuple(old.shape):
        raise ValueError(
            f"old_logits {tuple(old_logits.shape)} must be [B, T, V] for [B, T] = {tuple(old.shape)}"
        )
    ent, full_second = _chunked(old_logits, chunk_size, with_second=True)
    return predicted_entropy_change(old, advantages, entropy=ent, second_term=full_second)


def _one_region(key: str, r_mask: Tensor, t: _Tokens) -> dict[str, Tensor]:
    n = r_mask.sum().to(t.ratio.dtype)
    kept = r_mask & ~t.clipped  # tokens of R whose gradient survives the clip
    zero = t.ratio.new_zeros(())
    out = {
        f"{key}/share": n / t.n_valid,
        f"{key}/clip_frac": (r_mask & t.clipped).sum().to(t.ratio.dtype) / n.clamp(min=1.0),
        f"{key}/ratio_mean": torch.where(r_mask, t.ratio, zero).sum() / n.clamp(min=1.0),
        f"{key}/pred_dH": torch.where(kept, t.dh, zero).sum() / t.n_valid,
        f"{key}/pred_dH_clipped": torch.where(r_mask & t.clipped, t.dh, zero).sum() / t.n_valid,
    }
    if t.dh_full is not None:  # pi_old's logits at padded positions may give NaN: select
        out[f"{key}/pred_dH_full"] = torch.where(kept, t.dh_full, zero).sum() / t.n_valid
        clipped = r_mask & t.clipped
        out[f"{key}/pred_dH_full_clipped"] = torch.where(clipped, t.dh_full, zero).sum() / t.n_valid
    return out


def _broadcast_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    if advantages.dim() == 1 and like.dim() == 2 and advantages.shape[0] == like.shape[0]:
        return advantages.unsqueeze(-1).expand_as(like)
    return advantages

"""``ppo_clip`` (the fused, graph-free default path) pinned to ``ppo_clip_reference`` bit for bit.

``ppo_clip_reference`` is the readable specification (``prepare`` + ``clipped_surrogate`` +
``base_metrics`` under autograd); ``ppo_clip`` computes the same thing in one graph-free pass
(``flexent.losses._fused``) whenever ``fusable`` holds. Its docstring promises the same loss,
gradient and metrics bit for bit; this file is that promise as a property test. For every case,
on identical inputs:

- the per-token loss: same dtype, shape and bits (the sign of zeros included);
- the gradient with respect to ``logprobs`` after ``per_token_loss.sum().backward()`` and after
  the backward of a weighted sum with random weights (the chain through ``grad_output``): same
  dtype, shape and values, up to the sign of zeros, which the fused backward does not promise;
- the metrics: the same keys in the same order, each value with the same dtype, shape and bits;
- the fused path leaves its inputs untouched (it reuses buffers in place).

``torch.equal`` alone is not enough for "bit for bit": it treats ``-0.0 == 0.0`` and ignores the
dtype, so it is applied to an integer view of the bits (and dtypes are compared too).

The cases cover shapes, seeds, float32/float64 and bfloat16 log-probs, scalar eps and per-token
eps tensors (``[B, T]``, ``[B, 1]``, ``[T]``, one side only) in the compute dtype, sequence- and
token-level advantages with both signs and exact zeros, padding holding NaN/+inf/-inf log-probs
(and NaN/+inf eps), log-ratios on both clip sides, past and exactly on the ``LOG_RATIO_CLAMP``
boundary, ties ``r == 1 ± eps``, the dual clip, an all-masked row and an all-masked batch. Each
case first asserts that it exercises what it claims, so that no comparison passes vacuously,
and that ``fusable`` holds, so that the fused path is what is compared. Shape ``[1, 1]`` has
its own test, one feature per case (a single token cannot clip on both sides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest
import torch
from torch import Tensor

from flexent.losses import LOG_RATIO_CLAMP, ppo_clip, ppo_clip_reference
from flexent.losses._fused import fusable

NAN, INF = math.nan, math.inf
EpsLike = float | Tensor

DTYPES = [torch.float32, torch.float64, torch.bfloat16]
EPS_KINDS = ["scalar", "token", "row", "col", "one_side"]
ADV_KINDS = ["seq", "token"]
CLIP_CS = [None, 3.0]
SCALAR_EPS_LOW, SCALAR_EPS_HIGH = 0.2, 0.28

# (log-ratio, sign of A) planted at distinct valid tokens, in this order while room is left;
# the rest of the log-ratios are random. Dyadic values: old + value is exact (see make_case).
PLANTS: list[tuple[str, float, int]] = [
    ("clamp_high", 25.0, +1),  # past the clamp; A > 0: high clip
    ("clamp_low", -25.0, -1),  # past the clamp; A < 0: low clip
    ("at_clamp_high", 20.0, -1),  # exactly on the clamp: gradient -A e^20; dual clip (r > 3)
    ("at_clamp_low", -20.0, +1),  # exactly on the clamp: the gradient passes (-A e^-20)
    ("zero_adv", 0.5, 0),
    ("tie_high", 0.25, +1),  # r == 1 + eps_high exactly for per-token eps (see _plant_ties)
    ("tie_low", -0.25, -1),  # r == 1 - eps_low exactly for per-token eps
    ("dual_clamped", 25.0, -1),  # A < 0, clamped, dual clip (no clip_c: unclipped, no gradient)
    ("clamp_low_pos", -25.0, +1),  # A > 0, in band from below, but clamped: no gradient
    ("high", 0.5, +1),
    ("low", -0.5, -1),
    ("dual", 1.5, -1),  # r = e^1.5 > 3
    ("zero_adv_clamped", 25.0, 0),
]

_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16}


@dataclass
class Case:
    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    mask: Tensor
    eps_low: EpsLike
    eps_high: EpsLike
    clip_c: float | None
    weights: Tensor  # for the weighted-sum backward, [B, T] in the compute dtype

    def args(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.logprobs, self.old_logprobs, self.advantages, self.mask

    def kwargs(self) -> dict[str, EpsLike | float | None]:
        return {"eps_low": self.eps_low, "eps_high": self.eps_high, "clip_c": self.clip_c}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def bits(t: Tensor) -> Tensor:
    """The bit pattern of a float tensor as integers (distinguishes -0.0 from 0.0)."""
    return t.detach().view(_BITS[t.dtype]) if t.dtype in _BITS else t


def clone(x: EpsLike) -> EpsLike:
    return x.detach().clone() if isinstance(x, Tensor) else x


def cloned(case: Case) -> Case:
    """A deep copy of the inputs, so that each implementation gets its own tensors."""
    return Case(
        *(clone(t) for t in case.args()),
        eps_low=clone(case.eps_low),
        eps_high=clone(case.eps_high),
        clip_c=case.clip_c,
        weights=case.weights,
    )


def raw_log_ratio(case: Case) -> Tensor:
    """``logprobs - old_logprobs`` in the compute dtype, before masking and clamping."""
    dtype = compute_dtype(case.logprobs.dtype)
    return case.logprobs.to(dtype) - case.old_logprobs.to(dtype)


# ------------------------------------------------------------------------------------------
# Case construction


def _special(n: int, offset: int) -> Tensor:
    """``n`` padding values cycling through NaN, +inf, -inf (from ``offset``)."""
    cycle = torch.tensor([NAN, INF, -INF], dtype=torch.float64)
    return cycle[(torch.arange(n) + offset) % 3]


def _make_mask(B: int, T: int, gen: torch.Generator, empty_rows: tuple[int, ...]) -> Tensor:
    """Right padding of 1..T//3+1 tokens per row (none when T == 1), plus one interior hole per
    row when T >= 8 (prompt-style masks are not contiguous), and the ``empty_rows`` all masked."""
    pads = torch.randint(1, T // 3 + 2, (B,), generator=gen) if T > 1 else torch.zeros(B)
    valid = torch.arange(T) < (T - pads)[:, None]
    if T >= 8:
        holes = torch.randint(0, T // 2, (B,), generator=gen)
        valid[torch.arange(B), holes] = False
    valid[list(empty_rows)] = False
    return valid


def _plant(
    log_ratio: Tensor, adv_bt: Tensor, valid: Tensor, gen: torch.Generator, *, token_adv: bool
) -> dict[str, tuple[int, int]]:
    """Write ``PLANTS`` into ``log_ratio`` (and, for token-level advantages, the sign of A into
    ``adv_bt``) at distinct valid tokens in random order. Returns name -> (row, column)."""
    B, T = log_ratio.shape
    order = [divmod(int(i), T) for i in torch.randperm(B * T, generator=gen)]
    free = [(b, t) for b, t in order if valid[b, t]]
    where: dict[str, tuple[int, int]] = {}
    for name, value, sign in PLANTS:
        for b, t in free:
            if token_adv:
                adv_bt[b, t] = sign * (0.5 + adv_bt[b, t].abs())
            elif int(torch.sign(adv_bt[b, t])) != sign:
                continue
            log_ratio[b, t] = value
            where[name] = (b, t)
            free.remove((b, t))
            break
    return where


def _eps(
    kind: str, B: int, T: int, dtype: torch.dtype, valid: Tensor, gen: torch.Generator
) -> tuple[EpsLike, EpsLike]:
    """``(eps_low, eps_high)`` of the given kind; tensors in ``dtype`` with random widths, and
    for ``[B, T]`` garbage (NaN, +inf) on padding, as thresholds computed from padding give."""
    if kind == "scalar":
        return SCALAR_EPS_LOW, SCALAR_EPS_HIGH
    shape = {"token": (B, T), "row": (B, 1), "col": (T,), "one_side": (B, T)}[kind]
    low = (0.1 + 0.2 * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype)
    high = (0.15 + 0.2 * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype)
    if kind in ("token", "one_side"):
        pad = ~valid
        low[pad] = torch.where(torch.arange(int(pad.sum())) % 2 == 0, NAN, INF).to(dtype)
        high[pad] = torch.where(torch.arange(int(pad.sum())) % 2 == 0, INF, NAN).to(dtype)
    if kind == "one_side":
        return low, SCALAR_EPS_HIGH
    return low, high


def _plant_ties(case: Case, where: dict[str, tuple[int, int]]) -> None:
    """Set the per-token eps at the ``tie_*`` tokens so that ``r == 1 ± eps`` exactly there
    (r in (1, 2) or (1/2, 1): ``r - 1`` and ``1 - r`` are exact, and so is ``1 ± eps``). A
    ``[B, 1]`` or ``[T]`` eps takes the tie for its whole row or column."""
    ratio = raw_log_ratio(case).exp()
    for name, side in (("tie_high", "eps_high"), ("tie_low", "eps_low")):
        eps = getattr(case, side)
        if name not in where or not isinstance(eps, Tensor):
            continue
        b, t = where[name]
        r = ratio[b, t]
        index = (t,) if eps.dim() == 1 else (b, t if eps.shape[1] > 1 else 0)
        eps[index] = r - 1.0 if side == "eps_high" else 1.0 - r


def make_case(
    shape: tuple[int, int],
    seed: int,
    dtype: torch.dtype,
    eps_kind: str,
    adv_kind: str,
    clip_c: float | None,
    *,
    empty_rows: tuple[int, ...] = (),
) -> tuple[Case, dict[str, tuple[int, int]]]:
    """A random case with the ``PLANTS`` features; returns it and where each feature sits."""
    gen = torch.Generator().manual_seed(seed)
    B, T = shape
    cdt = compute_dtype(dtype)
    valid = _make_mask(B, T, gen, empty_rows)
    if adv_kind == "seq":  # rows A > 0, A < 0, A = 0, A > 0, ...
        sign = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)[torch.arange(B) % 3]
        adv = sign * (0.5 + 1.5 * torch.rand(B, generator=gen, dtype=torch.float64))
        adv_bt = adv[:, None].expand(B, T).clone()
    else:
        adv = torch.randn(B, T, generator=gen, dtype=torch.float64)
        adv[torch.rand(B, T, generator=gen) < 0.15] = 0.0
        adv_bt = adv
    log_ratio = 0.4 * torch.randn(B, T, generator=gen, dtype=torch.float64)
    where = _plant(log_ratio, adv_bt, valid, gen, token_adv=adv_kind == "token")
    # old on a dyadic grid small enough that old + a planted value is exact in ``dtype``
    # (bfloat16 has 8 significant bits: multiples of 1/8 below 32 in magnitude).
    grid, steps = (8, 32) if dtype == torch.bfloat16 else (64, 512)
    old = -torch.randint(0, steps + 1, (B, T), generator=gen).to(torch.float64) / grid
    logprobs = old + log_ratio
    n_pad = int((~valid).sum())
    logprobs[~valid], old[~valid] = _special(n_pad, 0), _special(n_pad, seed + 1)
    eps_low, eps_high = _eps(eps_kind, B, T, cdt, valid, gen)
    weights = torch.randn(B, T, generator=gen, dtype=torch.float64).to(cdt)
    case = Case(
        logprobs.to(dtype), old.to(dtype), adv.to(cdt), valid, eps_low, eps_high, clip_c, weights
    )
    _plant_ties(case, where)
    return case, where


# ------------------------------------------------------------------------------------------
# Running and comparing


def run(fn, case: Case) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
    """``fn`` on the case (a private copy: its log-probs become the leaf that gets the grad):
    ``(metrics, per-token loss, grad of sum, grad of weighted sum)``."""
    lp = case.logprobs.requires_grad_(True)
    out = fn(*case.args(), **case.kwargs())
    out.per_token_loss.sum().backward(retain_graph=True)
    grad_sum, lp.grad = lp.grad, None
    (out.per_token_loss * case.weights).sum().backward()
    return out.metrics, out.per_token_loss.detach(), grad_sum, lp.grad


def assert_same_bits(actual: Tensor, expected: Tensor, what: str) -> None:
    """Same dtype, shape and bits. ``torch.equal`` on the values alone would ignore the dtype
    and the sign of zeros and fail on NaN == NaN; on the integer bit views it is exact."""
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert torch.equal(bits(actual), bits(expected)), (
        f"{what}:\nfused     {actual}\nreference {expected}"
    )


def assert_same_grad(actual: Tensor, expected: Tensor, what: str) -> None:
    """Same dtype, shape and bits up to the sign of zeros, which does differ on tokens without
    a gradient (the fused backward multiplies out a zero coefficient, ``(grad * -A * keep) * r``,
    where autograd's ``where``/``clamp`` backward writes +0.0): ``x + 0.0`` turns -0.0 into 0.0
    and leaves every other value, NaN and inf included, as it is."""
    assert_same_bits(actual + 0.0, expected + 0.0, what)


def assert_matches_reference(case: Case) -> dict[str, Tensor]:
    """The fused path on ``case`` equals the reference bit for bit; returns the metrics."""
    assert fusable(case.logprobs, case.eps_low, case.eps_high), "case would not take the fused path"
    fused_inputs = cloned(case)
    m_fused, loss_fused, g_sum_fused, g_w_fused = run(ppo_clip, fused_inputs)
    m_ref, loss_ref, g_sum_ref, g_w_ref = run(ppo_clip_reference, cloned(case))

    assert_same_bits(loss_fused, loss_ref, "per-token loss")
    assert_same_grad(g_sum_fused, g_sum_ref, "grad of loss.sum()")
    assert_same_grad(g_w_fused, g_w_ref, "grad of (loss * weights).sum()")
    assert list(m_fused) == list(m_ref), "metric keys or their order differ"
    for key in m_ref:
        assert_same_bits(m_fused[key], m_ref[key], f"metric {key}")

    for name, before, after in zip(
        ("logprobs", "old_logprobs", "advantages", "mask", "eps_low", "eps_high"),
        (*case.args(), case.eps_low, case.eps_high),
        (*fused_inputs.args(), fused_inputs.eps_low, fused_inputs.eps_high),
        strict=True,
    ):
        if isinstance(before, Tensor):
            assert torch.equal(bits(after), bits(before)), f"the fused path wrote into {name}"
    return m_ref


# ------------------------------------------------------------------------------------------
# Non-vacuity: what each case claims to exercise, checked on its inputs and reference metrics


def check_exercises(
    case: Case, where: dict[str, tuple[int, int]], metrics: dict[str, Tensor], adv_kind: str
) -> None:
    valid = case.mask
    raw = raw_log_ratio(case)
    adv_bt = case.advantages if adv_kind == "token" else case.advantages[:, None]
    adv_bt = adv_bt.expand(valid.shape)
    assert metrics["clip/frac_high"] > 0 and metrics["clip/frac_low"] > 0
    assert 0 < metrics["clip/frac"] < 1  # some tokens in band too
    if case.clip_c is not None:
        assert metrics["clip/frac_dual"] > 0
    assert (raw[valid] > LOG_RATIO_CLAMP).any() and (raw[valid] < -LOG_RATIO_CLAMP).any()
    assert (raw[valid] == LOG_RATIO_CLAMP).any() and (raw[valid] == -LOG_RATIO_CLAMP).any()
    assert (adv_bt[valid] > 0).any() and (adv_bt[valid] < 0).any()
    if valid.shape[1] >= 8:  # (rows of 5 have no room left for it)
        # A token whose gradient the clamp alone removes (A > 0, r below the band: in band).
        assert ((adv_bt > 0) & (raw < -LOG_RATIO_CLAMP) & valid).any()
    if adv_kind == "token" or valid.shape[0] >= 3:
        assert (adv_bt[valid] == 0).any(), "no valid token with an exact zero advantage"
    for t in (case.logprobs, case.old_logprobs):
        pad = t[~valid]
        assert pad.isnan().any() and (pad == INF).any() and (pad == -INF).any()
    if isinstance(case.eps_high, Tensor):  # per-token eps: a tie on the upper side
        b, t = where["tie_high"]
        hi = 1.0 + case.eps_high.expand(valid.shape)[b, t]
        assert raw[b, t].exp() == hi and adv_bt[b, t] > 0
    if isinstance(case.eps_low, Tensor):
        b, t = where["tie_low"]
        lo = 1.0 - case.eps_low.expand(valid.shape)[b, t]
        assert raw[b, t].exp() == lo and adv_bt[b, t] < 0


# ------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("clip_c", CLIP_CS)
@pytest.mark.parametrize("adv_kind", ADV_KINDS)
@pytest.mark.parametrize("eps_kind", EPS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(3, 5), (4, 17), (2, 64)], ids=str)
def test_fused_matches_reference(shape, seed, dtype, eps_kind, adv_kind, clip_c) -> None:
    case, where = make_case(shape, seed, dtype, eps_kind, adv_kind, clip_c)
    metrics = assert_matches_reference(case)
    check_exercises(case, where, metrics, adv_kind)


def test_fusable_takes_per_token_eps_in_the_compute_dtype_only() -> None:
    """The grid above runs the fused path for every dtype: bfloat16 log-probs compute in
    float32, so float32 eps tensors are fusable with them (bfloat16 ones are not)."""
    eps = {dt: torch.zeros(1, 1, dtype=dt) for dt in DTYPES}
    for dtype in DTYPES:
        lp = torch.zeros(1, 1, dtype=dtype)
        assert fusable(lp, 0.2, 0.28)
        for eps_dtype, e in eps.items():
            assert fusable(lp, e, 0.28) == (eps_dtype == compute_dtype(dtype))
            assert fusable(lp, 0.2, e) == (eps_dtype == compute_dtype(dtype))


# One token, one feature each: (log-ratio, A, None or the (logprob, old) of a padding token).
SINGLE_TOKEN: dict[str, tuple[float, float, tuple[float, float] | None]] = {
    "in_band_pos": (0.1, 1.5, None),
    "in_band_neg": (-0.1, -1.5, None),
    "high": (0.5, 1.5, None),
    "below_low_pos": (-0.5, 1.5, None),  # A > 0: the lower side does not clip
    "low": (-0.5, -1.5, None),
    "above_high_neg": (0.5, -1.5, None),  # A < 0: the upper side does not clip
    "dual": (1.5, -1.5, None),
    "clamp_high_neg": (25.0, -1.5, None),
    "clamp_low_pos": (-25.0, 1.5, None),
    "at_clamp_high": (20.0, -1.5, None),
    "at_clamp_low": (-20.0, 1.5, None),
    "zero_adv": (0.5, 0.0, None),
    "pad_nan": (0.0, 1.5, (NAN, -1.0)),
    "pad_inf_inf": (0.0, -1.5, (INF, INF)),
    "pad_-inf_-inf": (0.0, 1.5, (-INF, -INF)),
    "pad_old_nan": (0.0, -1.5, (-1.0, NAN)),
}


def _single_token_claims(name: str, case: Case, metrics: dict[str, Tensor]) -> None:
    """The one feature ``name`` is what the case exercises."""
    valid = bool(case.mask.any())
    assert valid == (SINGLE_TOKEN[name][2] is None)
    assert metrics["clip/frac_high"] == float(name == "high")
    assert metrics["clip/frac_low"] == float(name == "low")
    if case.clip_c is not None:
        dual = name in ("dual", "clamp_high_neg", "at_clamp_high")
        assert metrics["clip/frac_dual"] == float(dual)
    raw = raw_log_ratio(case)[0, 0]
    if "clamp" in name:
        assert (raw.abs() == LOG_RATIO_CLAMP) == name.startswith("at_clamp")
        assert raw.abs() >= LOG_RATIO_CLAMP
    if not valid:
        pads = (case.logprobs[0, 0], case.old_logprobs[0, 0])
        assert any(not torch.isfinite(x) for x in pads)


@pytest.mark.parametrize("clip_c", CLIP_CS)
@pytest.mark.parametrize("eps_kind", ["scalar", "token"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SINGLE_TOKEN))
def test_fused_matches_reference_single_token(name, dtype, eps_kind, clip_c) -> None:
    log_ratio, adv, pad = SINGLE_TOKEN[name]
    cdt = compute_dtype(dtype)
    old = -0.75
    lp, old = pad if pad is not None else (old + log_ratio, old)
    eps = (
        (SCALAR_EPS_LOW, SCALAR_EPS_HIGH)
        if eps_kind == "scalar"
        else (torch.full((1, 1), 0.15, dtype=cdt), torch.full((1, 1), 0.3, dtype=cdt))
    )
    case = Case(
        torch.tensor([[lp]], dtype=dtype),
        torch.tensor([[old]], dtype=dtype),
        torch.tensor([adv], dtype=cdt),
        torch.tensor([[pad is None]]),
        *eps,
        clip_c=clip_c,
        weights=torch.tensor([[-1.75]], dtype=cdt),
    )
    metrics = assert_matches_reference(case)
    _single_token_claims(name, case, metrics)


@pytest.mark.parametrize("clip_c", CLIP_CS)
@pytest.mark.parametrize("adv_kind", ADV_KINDS)
@pytest.mark.parametrize("eps_kind", EPS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_matches_reference_all_masked_row(dtype, eps_kind, adv_kind, clip_c) -> None:
    # Rows A > 0, A < 0, A = 0 (seq advantages), and row 3 all padding.
    case, where = make_case((4, 9), 3, dtype, eps_kind, adv_kind, clip_c, empty_rows=(3,))
    assert not case.mask[3].any() and case.mask[:3].any(dim=1).all()
    metrics = assert_matches_reference(case)
    check_exercises(case, where, metrics, adv_kind)


@pytest.mark.parametrize("clip_c", CLIP_CS)
@pytest.mark.parametrize("adv_kind", ADV_KINDS)
@pytest.mark.parametrize("eps_kind", EPS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_matches_reference_all_masked_batch(dtype, eps_kind, adv_kind, clip_c) -> None:
    case, _ = make_case((2, 5), 4, dtype, eps_kind, adv_kind, clip_c)
    case = replace(case, mask=torch.zeros_like(case.mask))
    # Every position is padding now: give the log-probs padding values everywhere.
    n = case.mask.numel()
    case.logprobs.view(-1)[:] = _special(n, 0).to(dtype)
    case.old_logprobs.view(-1)[:] = _special(n, 2).to(dtype)
    metrics = assert_matches_reference(case)
    assert all(v == 0 for v in metrics.values())  # means over no token are 0


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "inf"])
@pytest.mark.parametrize("side", ["eps_low", "eps_high"])
@pytest.mark.parametrize("valid", [True, False], ids=["valid_zero_adv", "padding"])
def test_fused_matches_reference_nonfinite_eps(value, side, valid) -> None:
    """A NaN or +inf per-token eps (no clip) on a token whose advantage is 0 (an exact 0, or
    padding).

    Outside the contract, not tested for equality: a negative eps (-inf included; the bound
    ``1 + eps`` would fall below 1). The fused pass then gives ``inf * -0.0 = NaN`` where the
    reference gives ``-0.0`` on a token with A = 0. ``DynamicThresholds`` never produces one
    (its values are clamped to ``eps_clamp``), and checking user tensors would cost a pass and a
    host sync in every call (``ppo_clip``'s docstring states the contract).
    """
    eps: dict[str, EpsLike] = {"eps_low": SCALAR_EPS_LOW, "eps_high": SCALAR_EPS_HIGH}
    eps[side] = torch.tensor([[0.2, value, 0.2]])
    case = Case(
        torch.tensor([[0.3, 0.0, -0.3]]),
        torch.zeros(1, 3),
        torch.tensor([[1.0, 0.0 if valid else 1.0, -1.0]]),
        torch.tensor([[True, valid, True]]),
        eps["eps_low"],
        eps["eps_high"],
        clip_c=None,
        weights=torch.ones(1, 3),
    )
    metrics = assert_matches_reference(case)
    assert metrics["clip/frac_high"] > 0 and metrics["clip/frac_low"] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_nan_logprob_on_a_valid_token_gives_a_nan_loss_in_both(dtype) -> None:
    """A NaN log-prob on a valid token (a broken model output) is outside the bit-for-bit
    contract, which covers finite log-probs on valid tokens: both paths give a NaN loss there,
    so the failure is visible; their gradients differ (the reference's ``clamp`` backward passes
    0 at NaN, the fused one ``grad * 0 * r = NaN``)."""
    args = (
        torch.tensor([[0.1, NAN]], dtype=dtype, requires_grad=True),
        torch.zeros(1, 2, dtype=dtype),
        torch.tensor([1.0], dtype=dtype),
        torch.ones(1, 2, dtype=torch.bool),
    )
    for fn in (ppo_clip, ppo_clip_reference):
        loss = fn(*args, eps_low=SCALAR_EPS_LOW, eps_high=SCALAR_EPS_HIGH).per_token_loss
        assert torch.isnan(loss[0, 1]) and torch.isfinite(loss[0, 0])

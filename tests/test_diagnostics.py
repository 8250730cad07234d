"""Entropy diagnostics: token_entropy vs Categorical, region classification, pred_dH vs SGD."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical

from flexent.diagnostics import entropy_stats, region_masks, region_stats, token_entropy


@pytest.mark.parametrize(("shape", "chunk"), [((2, 5, 7), 3), ((3, 4, 50), 1024), ((1, 9, 11), 1)])
def test_token_entropy_matches_categorical(shape, chunk):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g) * 3.0
    # mask part of the vocabulary with -inf (keep at least one finite logit per row)
    drop = torch.rand(shape, generator=g) < 0.4
    drop[..., 0] = False
    logits = logits.masked_fill(drop, float("-inf"))
    ours = token_entropy(logits, chunk_size=chunk)
    ref = Categorical(logits=logits).entropy()
    assert ours.shape == shape[:-1]
    assert not torch.isnan(ours).any()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_token_entropy_gradient_and_dtypes():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 3, 8, generator=g)
    base[0, 0, 3:] = float("-inf")
    ours_in = base.clone().requires_grad_(True)
    ref_in = base.clone().requires_grad_(True)
    token_entropy(ours_in, chunk_size=2).sum().backward()
    Categorical(logits=ref_in).entropy().sum().backward()
    assert ours_in.grad is not None and ref_in.grad is not None
    assert not torch.isnan(ours_in.grad).any()
    finite = torch.isfinite(base)
    torch.testing.assert_close(ours_in.grad[finite], ref_in.grad[finite], atol=1e-5, rtol=1e-5)
    # bf16 input is computed in float32; float64 stays float64
    assert token_entropy(base.bfloat16()).dtype == torch.float32
    assert token_entropy(base.double()).dtype == torch.float64


def test_token_entropy_special_rows():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [5.0] + [float("-inf")] * 3, [float("-inf")] * 4])
    # uniform over 4: ln 4; one finite logit: 0; all masked: defined as 0
    torch.testing.assert_close(token_entropy(logits), torch.tensor([math.log(4), 0.0, 0.0]))
    with pytest.raises(ValueError, match="chunk_size"):
        token_entropy(logits, chunk_size=0)


def test_entropy_stats_empty_mask():
    s = entropy_stats(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert all(float(v) == 0.0 for v in s.values())
    assert set(s) == {"entropy/mean", "entropy/std", "entropy/min", "entropy/max"}


def _hand_batch():
    # One sequence with A = +1 and one with A = -1, four tokens each, last token of seq 1 masked.
    # (p_old, H of pi_old): surprisal -ln p vs H decides theory; p > 0.7 / p <= 0.3 empirical.
    #   (0.9, 0.5):  surprisal 0.105 <= 0.5  -> theory expected,   empirical high
    #   (0.1, 0.5):  surprisal 2.303 >  0.5  -> theory surprising, empirical low
    #   (0.5, 1.0):  surprisal 0.693 <= 1.0  -> theory expected,   empirical none (middle)
    #   (0.25, 2.0): surprisal 1.386 <= 2.0  -> theory expected,   empirical low
    p = torch.tensor([[0.9, 0.1, 0.5, 0.25], [0.9, 0.1, 0.5, 0.25]])
    h = torch.tensor([[0.5, 0.5, 1.0, 2.0], [0.5, 0.5, 1.0, 2.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    return p.log(), h, adv, mask


def test_region_classification_by_hand():
    old_lp, h, adv, mask = _hand_batch()
    th = region_masks(old_lp, adv, mask, entropy=h, scheme="theory")
    # A > 0 row: tokens 0, 2, 3 expected (E1), token 1 surprising (E2);
    # A < 0 row: tokens 0, 2 expected (E3), token 1 surprising (E4); token 3 masked.
    assert th["E1"].tolist() == [[True, False, True, True], [False] * 4]
    assert th["E2"].tolist() == [[False, True, False, False], [False] * 4]
    assert th["E3"].tolist() == [[False] * 4, [True, False, True, False]]
    assert th["E4"].tolist() == [[False] * 4, [False, True, False, False]]
    emp = region_masks(old_lp, adv, mask, scheme="empirical")
    assert emp["E1"].tolist() == [[True, False, False, False], [False] * 4]
    assert emp["E2"].tolist() == [[False, True, False, True], [False] * 4]
    assert emp["E3"].tolist() == [[False] * 4, [True, False, False, False]]
    assert emp["E4"].tolist() == [[False] * 4, [False, True, False, False]]


def test_region_stats_by_hand():
    old_lp, h, adv, mask = _hand_batch()
    # ratios: row A>0: [1.5, 1.5, 0.5, 1.0]; row A<0: [0.5, 0.5, 1.5, 9.0 (masked)]
    ratio = torch.tensor([[1.5, 1.5, 0.5, 1.0], [0.5, 0.5, 1.5, 9.0]])
    lp = old_lp + ratio.log()
    s = region_stats(
        lp,
        old_lp,
        adv,
        mask,
        entropy=h,
        eps_low=0.2,
        eps_high=0.28,
        schemes=("theory", "empirical"),
    )
    # 7 valid tokens. Theory E1 = {1.5, 0.5, 1.0}: share 3/7, clipped where r > 1.28 -> 1/3,
    # ratio mean 3.0/3 = 1. E2 = {1.5}: share 1/7, clipped 1/1. E3 = {0.5, 1.5}: clipped where
    # r < 0.8 -> 1/2, mean 1.0. E4 = {0.5}: clipped 1/1.
    expect = {
        "region/E1/share": 3 / 7, "region/E1/clip_frac": 1 / 3, "region/E1/ratio_mean": 1.0,
        "region/E2/share": 1 / 7, "region/E2/clip_frac": 1.0, "region/E2/ratio_mean": 1.5,
        "region/E3/share": 2 / 7, "region/E3/clip_frac": 0.5, "region/E3/ratio_mean": 1.0,
        "region/E4/share": 1 / 7, "region/E4/clip_frac": 1.0, "region/E4/ratio_mean": 0.5,
        # empirical: E1 = {1.5}, E2 = {1.5, 1.0}, E3 = {0.5}, E4 = {0.5}
        "region_emp/E1/share": 1 / 7, "region_emp/E1/clip_frac": 1.0,
        "region_emp/E2/share": 2 / 7, "region_emp/E2/clip_frac": 0.5,
        "region_emp/E2/ratio_mean": 1.25,
        "region_emp/E3/share": 1 / 7, "region_emp/E3/clip_frac": 1.0,
        "region_emp/E4/share": 1 / 7, "region_emp/E4/clip_frac": 1.0,
    }  # fmt: skip
    for key, value in expect.items():
        assert s[key].dim() == 0
        assert float(s[key]) == pytest.approx(value), key
    # pred_dH counts unclipped tokens only: theory E1 keeps (0.5, 1.0) on (p, H) = (0.5, 1.0)
    # and (0.25, 2.0): -1 * [0.5 (ln 0.5 + 1) + 0.25 (ln 0.25 + 2)] / 7
    e1 = -(0.5 * (math.log(0.5) + 1.0) + 0.25 * (math.log(0.25) + 2.0)) / 7
    assert float(s["region/E1/pred_dH"]) == pytest.approx(e1)
    assert float(s["region/E2/pred_dH"]) == 0.0  # its only token is clipped
    # pred_dH_clipped: the same term over the clipped tokens (what the clip removed).
    # E1's clipped token (p, H) = (0.9, 0.5): -1 * 0.9 (ln 0.9 + 0.5) / 7;
    # E2's (0.1, 0.5), surprising: -1 * 0.1 (ln 0.1 + 0.5) / 7 > 0 (an entropy rise removed)
    assert float(s["region/E1/pred_dH_clipped"]) == pytest.approx(-0.9 * (math.log(0.9) + 0.5) / 7)
    assert float(s["region/E2/pred_dH_clipped"]) == pytest.approx(-0.1 * (math.log(0.1) + 0.5) / 7)
    assert float(s["region/E2/pred_dH_clipped"]) > 0


def _entropy(z):
    p = torch.softmax(z, -1)
    return -(p * p.log()).sum()


Z0 = torch.tensor([2.0, 1.5, 0.5, 0.0, -0.5, -1.0], dtype=torch.float64)


def _sgd_vs_prediction(token, adv):
    # Toy vocabulary of 6; one SGD step on the PPO surrogate -r A (r = 1 at pi_old) moves the
    # logits, and the entropy change is measured directly.
    z0 = Z0
    z = z0.clone().requires_grad_(True)
    logp = torch.log_softmax(z, -1)
    loss = -(logp[token] - logp[token].detach()).exp() * adv
    loss.backward()
    lr = 1e-4
    assert z.grad is not None
    actual = float(_entropy(z0 - lr * z.grad) - _entropy(z0))

    old_lp = torch.log_softmax(z0, -1)[token].reshape(1, 1)
    s = region_stats(
        old_lp, old_lp, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1),
        entropy=_entropy(z0).reshape(1, 1), eps_low=0.2, eps_high=0.28, schemes="theory",
        old_logits=z0.reshape(1, 1, 6),
    )  # fmt: skip
    return actual, lr, s


@pytest.mark.parametrize(
    ("token", "adv", "region"), [(0, 1.0, "E1"), (5, 1.0, "E2"), (0, -1.0, "E3"), (5, -1.0, "E4")]
)
def test_pred_dH_sign_matches_one_sgd_step(token, adv, region):
    actual, lr, s = _sgd_vs_prediction(token, adv)
    assert float(s[f"region/{region}/share"]) == 1.0
    assert math.copysign(1.0, float(s[f"region/{region}/pred_dH"])) == math.copysign(1.0, actual)
    # the full first-order formula predicts the change itself, up to the step size
    assert float(s[f"region/{region}/pred_dH_full"]) * lr == pytest.approx(actual, rel=1e-2)
    # the region's sign from docs/method.md §2: E1, E4 lower entropy; E2, E3 raise it
    assert (actual > 0) == (region in ("E2", "E3"))


def test_token_term_can_miss_near_the_boundary():
    # Token 1 has p = 0.29 and surprisal 1.24 just below H = 1.34: "expected", so E1 with A > 0,
    # yet the step raises entropy because the distribution-wide term dominates here. Only the
    # full formula (pred_dH_full) gets the sign right: the regions are a first-term heuristic.
    actual, lr, s = _sgd_vs_prediction(1, 1.0)
    assert float(s["region/E1/share"]) == 1.0
    assert actual > 0 and float(s["region/E1/pred_dH"]) < 0
    assert float(s["region/E1/pred_dH_full"]) * lr == pytest.approx(actual, rel=1e-2)


def test_region_stats_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown region scheme"):
        region_stats(x, x, x, x, entropy=x, eps_low=0.2, eps_high=0.2, schemes="magic")
    with pytest.raises(ValueError, match=r"mask shape \(2, 4\) != logprobs shape \(2, 3\)"):
        region_stats(x, x, x, torch.ones(2, 4), entropy=x, eps_low=0.2, eps_high=0.2)
    with pytest.raises(ValueError, match="needs entropy"):
        region_masks(x, x, x, scheme="theory")


# --- NaN / inf at padded positions, huge log-ratios ----------------------------------------


def test_region_stats_ignore_nan_and_inf_padding():
    """Two valid tokens and one padded slot holding -inf log-probs, NaN entropy and advantage.

    Token 0: p = 0.9, H = 0.5, surprisal 0.105 <= H (expected), A = +1 -> E1, r = 1.1.
    Token 1: p = 0.1, H = 0.5, surprisal 2.303 > H (surprising), A = -1 -> E4, r = 0.9.
    Band [0.8, 1.2]: neither is clipped. pred_dH = -A p (ln p + H) / 2 valid tokens.
    """
    nan, ninf = float("nan"), float("-inf")
    old = torch.tensor([[math.log(0.9), math.log(0.1), ninf]], dtype=torch.float64)
    new = torch.tensor([[math.log(0.9 * 1.1), math.log(0.1 * 0.9), ninf]], dtype=torch.float64)
    entropy = torch.tensor([[0.5, 0.5, nan]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, nan]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    out = region_stats(
        new, old, adv, mask, entropy=entropy, eps_low=0.2, eps_high=0.2, schemes="theory"
    )
    assert all(math.isfinite(float(v)) for v in out.values()), out
    expected = {
        "region/E1/share": 0.5,
        "region/E1/ratio_mean": 1.1,
        "region/E1/clip_frac": 0.0,
        "region/E1/pred_dH": -0.9 * (math.log(0.9) + 0.5) / 2,
        "region/E4/share": 0.5,
        "region/E4/ratio_mean": 0.9,
        "region/E4/clip_frac": 0.0,
        "region/E4/pred_dH": 0.1 * (math.log(0.1) + 0.5) / 2,
        "region/E2/share": 0.0,
        "region/E3/ratio_mean": 0.0,
    }
    for key, value in expected.items():
        assert float(out[key]) == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_region_stats_clamp_the_log_ratio():
    """logprobs - old_logprobs = 100 on the only valid token: the log-ratio is clamped to 20 (as
    in the losses), so ratio_mean = e^20 instead of inf. p = 0.5, H = 1 >= ln 2: E1, clipped."""
    old = torch.tensor([[math.log(0.5), 0.0]], dtype=torch.float64)
    new = old + torch.tensor([[100.0, 0.0]], dtype=torch.float64)
    out = region_stats(
        new,
        old,
        torch.tensor([[1.0, 1.0]], dtype=torch.float64),
        torch.tensor([[1, 0]]),
        entropy=torch.tensor([[1.0, 1.0]], dtype=torch.float64),
        eps_low=0.2,
        eps_high=0.2,
    )
    assert float(out["region/E1/ratio_mean"]) == pytest.approx(math.exp(20.0), rel=1e-12)
    assert float(out["region/E1/clip_frac"]) == 1.0
    assert float(out["region/E1/pred_dH"]) == 0.0  # its gradient is clipped away


@pytest.mark.parametrize("pad", [float("nan"), float("inf"), float("-inf")])
def test_entropy_stats_ignore_non_finite_padding(pad):
    """Valid entropies 1 and 3: mean 2, population std 1, min 1, max 3, whatever the pad holds."""
    s = entropy_stats(torch.tensor([[1.0, 3.0, pad]]), torch.tensor([[1, 1, 0]]))
    got = [float(s[k]) for k in ("entropy/mean", "entropy/std", "entropy/min", "entropy/max")]
    assert got == [2.0, 1.0, 1.0, 3.0]

"""GMPO and DRO: hand-derived values and gradients, a straight-line GMPO reference with per-token
thresholds, parity with verl 0.9.1's own ``geo_mean`` / ``dro`` (directly and through the
flexent verl plugin), and the places where flexent departs from verl on purpose."""

from __future__ import annotations

import math
import re

import pytest
import torch

from flexent.losses import LossTraits, aggregate, compute_policy_loss, loss_traits
from flexent.losses.dro import dro
from flexent.losses.geometric import gmpo


def grad_of(fn, logprobs: torch.Tensor, *args, agg: str | None = None, **kwargs):
    """(per-token loss, d loss / d logprobs, metrics); the loss is the per-token sum, or its
    aggregation with mode ``agg`` (``args[2]`` is the mask)."""
    lp = logprobs.detach().clone().requires_grad_(True)
    out = fn(lp, *args, **kwargs)
    total = out.per_token_loss.sum() if agg is None else aggregate(out.per_token_loss, args[2], agg)
    (g,) = torch.autograd.grad(total, lp)
    return out.per_token_loss.detach(), g, out.metrics


def test_traits() -> None:
    # GMPO clips per token (eps of token-level size, per-token tensors allowed) but averages per
    # sequence: the paper's and verl's value is a mean over sequences; its loss reads the
    # sequence's mean advantage, not each token's. DRO: no clip, no mode.
    assert loss_traits("gmpo") == LossTraits(
        default_agg="seq-mean-token-mean", per_token_advantage=False
    )
    assert loss_traits("dro") == LossTraits()


# ---------------------------------------------------------------- GMPO


def test_gmpo_hand_values_and_gradient() -> None:
    # eps_low 0.2, eps_high 0.4 (log space); old log-probs 0, so log r = logprobs.
    # Row 0, A = +1, log r = 0.1, 0.6, -0.7:
    #   0.6 > 0.4 with A > 0: clipped to 0.4 (flat); -0.7 < -0.2 but A > 0: left free.
    #   s_0 = exp((0.1 + 0.4 - 0.7) / 3) = exp(-0.0666667) = 0.935507,  L_0 = -s_0 = -0.935507
    # Row 1, A = -2, log r = 0.5, -0.3, third token padding (NaN):
    #   0.5 > 0.4 but A < 0: free; -0.3 < -0.2 with A < 0: clipped to -0.2 (flat).
    #   s_1 = exp((0.5 - 0.2) / 2) = exp(0.15) = 1.161834,  L_1 = 2 s_1 = 2.323668
    # Per-token loss: L_i on each valid token.  seq-mean-token-mean: (L_0 + L_1) / 2 = 0.694081.
    # Gradient of that mean: (1/2) * (-A_i s_i / n_i) on free tokens, 0 on clipped and padding:
    #   row 0: -0.935507 / 3 / 2 = -0.155918;  row 1: 2 * 1.161834 / 2 / 2 = 0.580917.
    lp = torch.tensor([[0.1, 0.6, -0.7], [0.5, -0.3, math.nan]], dtype=torch.float64)
    old = torch.zeros(2, 3, dtype=torch.float64)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    loss, g, m = grad_of(
        gmpo, lp, old, adv, mask, eps_low=0.2, eps_high=0.4, agg="seq-mean-token-mean"
    )
    L0, L1 = -0.935507, 2.323668
    expected = torch.tensor([[L0, L0, L0], [L1, L1, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    assert float(aggregate(loss, mask, "seq-mean-token-mean")) == pytest.approx(0.694081, abs=1e-6)
    want = torch.tensor([[-0.155918, 0.0, -0.155918], [0.580917, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(g, want, atol=1e-6, rtol=0)
    # flat tokens: one with A > 0 above exp(0.4), one with A < 0 below exp(-0.2), of 5 valid
    assert float(m["clip/frac_high"]) == pytest.approx(1 / 5)
    assert float(m["clip/frac_low"]) == pytest.approx(1 / 5)
    # valid-token mean of s_i: (3 * 0.935507 + 2 * 1.161834) / 5 = 1.026038
    assert float(m["gmpo/seq_ratio_mean"]) == pytest.approx(1.026038, abs=1e-6)


def test_gmpo_zero_advantage_token_adds_log_ratio_zero() -> None:
    # Token advantages A = (1, 0), log r = (0.2, 0.3): verl multiplies the clipped log-ratio by
    # sign(A), so the A = 0 token counts as log r = 0 (and gets no gradient).
    # s = exp((0.2 + 0) / 2) = exp(0.1);  L = -mean(A) s = -0.5 * 1.105171 = -0.552585
    # gradient of L on token 0: -0.5 * 1.105171 / 2 = -0.276293; token 1: 0.
    lp = torch.tensor([[0.2, 0.3]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, g, _ = grad_of(gmpo, lp, torch.zeros_like(lp), adv, mask, agg="seq-mean-token-mean")
    torch.testing.assert_close(loss, torch.full((1, 2), -0.552585).double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(g, torch.tensor([[-0.276293, 0.0]]).double(), atol=1e-6, rtol=0)


def gmpo_reference(lp, old, adv, mask, el, eh):
    """seq-mean-token-mean GMPO and its gradient over Python floats, one sequence at a time:
    mean over non-empty rows of -mean(A) exp(mean c_t), c_t the sign-aware log-space clip."""
    B, T = len(lp), len(lp[0])
    rows = [b for b in range(B) if any(mask[b])]
    grad = [[0.0] * T for _ in range(B)]
    total = 0.0
    for b in rows:
        valid = [t for t in range(T) if mask[b][t]]
        n = len(valid)
        c, free = {}, {}
        for t in valid:
            a, x = adv[b][t], lp[b][t] - old[b][t]
            if a > 0 and x > eh[b][t]:
                c[t], free[t] = eh[b][t], False
            elif a < 0 and x < -el[b][t]:
                c[t], free[t] = -el[b][t], False
            elif a == 0:
                c[t], free[t] = 0.0, False
            else:
                c[t], free[t] = x, True
        s = math.exp(sum(c.values()) / n)
        a_mean = sum(adv[b][t] for t in valid) / n
        total += -a_mean * s
        for t in valid:
            if free[t]:
                grad[b][t] = -a_mean * s / n / len(rows)
    return total / max(len(rows), 1), torch.tensor(grad, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmpo_matches_straight_line_reference_with_per_token_thresholds(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    B, T = 5, 9
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    lp = (old + 0.6 * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=-1e-3)
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    adv[adv.abs() < 0.2] = 0.0  # some A = 0 tokens
    mask = torch.rand(B, T, generator=g) > 0.2
    mask[-1] = False  # an empty row: left out of the sequence mean
    wide = torch.rand(B, T, generator=g) > 0.7
    el = torch.where(wide, 0.4, 0.2).double()
    eh = torch.where(wide.roll(1, 1), 0.4, 0.2).double()
    loss, grad, _ = grad_of(
        gmpo, lp, old, adv, mask, eps_low=el, eps_high=eh, agg="seq-mean-token-mean"
    )
    ref_loss, ref_grad = gmpo_reference(
        lp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), el.tolist(), eh.tolist()
    )
    assert float(aggregate(loss, mask, "seq-mean-token-mean")) == pytest.approx(ref_loss, rel=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-15)
    assert (grad[mask] != 0).any() and (grad[mask] == 0).any()  # some tokens really are flat


def test_gmpo_nan_per_token_eps_never_clips() -> None:
    # eps_high NaN on token 1 (as thresholds of garbage log-probs): log r = 0.6 stays free.
    # s = exp((0.1 + 0.6) / 2) = exp(0.35) = 1.419068; gradient of L = -s: -s / 2 on both.
    lp = torch.tensor([[0.1, 0.6]], dtype=torch.float64)
    eh = torch.tensor([[0.4, math.nan]], dtype=torch.float64)
    loss, g, _ = grad_of(gmpo, lp, torch.zeros_like(lp), torch.ones(1).double(),
                         torch.ones(1, 2), eps_high=eh, agg="seq-mean-token-mean")  # fmt: skip
    torch.testing.assert_close(loss, torch.full((1, 2), -1.419068).double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(g, torch.full((1, 2), -0.709534).double(), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- DRO


def test_dro_hand_values_and_gradient() -> None:
    # q = 0.5 on every token, p = 0.25, 0.5, 0.8: l = ln .5, 0, ln 1.6 = -0.693147, 0, 0.470004.
    # dro_beta 0.1: penalty 0.05 l^2 = 0.024023, 0, 0.011045.
    # A = +1: loss -ln p + penalty = 1.386294 + 0.024023, 0.693147, 0.223144 + 0.011045
    #       = 1.410317, 0.693147, 0.234189;  gradient -A + 0.1 l = -1.069315, -1, -0.953000
    # A = -1: loss ln p + penalty = -1.362272, -0.693147, -0.212098;
    #       gradient 1 + 0.1 l = 0.930685, 1, 1.047000
    old = torch.full((2, 3), math.log(0.5), dtype=torch.float64)
    lp = torch.tensor([[0.25, 0.5, 0.8]] * 2, dtype=torch.float64).log()
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, g, m = grad_of(dro, lp, old, adv, torch.ones(2, 3, dtype=torch.bool), dro_beta=0.1)
    expected = [[1.410317, 0.693147, 0.234189], [-1.362272, -0.693147, -0.212098]]
    torch.testing.assert_close(loss, torch.tensor(expected).double(), atol=1e-6, rtol=0)
    want = [[-1.069315, -1.0, -0.953000], [0.930685, 1.0, 1.047000]]
    torch.testing.assert_close(g, torch.tensor(want).double(), atol=1e-6, rtol=0)
    # mean penalty over the 6 tokens: 2 (0.024023 + 0.011045) / 6 = 0.011689
    assert float(m["dro/penalty_mean"]) == pytest.approx(0.011689, abs=1e-6)
    # metrics only, eps 0.2: A > 0 with r = 1.6 > 1.2; A < 0 with r = 0.5 < 0.8
    assert float(m["clip/frac_high"]) == pytest.approx(1 / 6)
    assert float(m["clip/frac_low"]) == pytest.approx(1 / 6)


def test_dro_penalty_acts_where_the_advantage_is_zero() -> None:
    # A = 0, l = 0.3, beta 0.05 (the default): loss 0.025 * 0.09 = 0.00225, gradient 0.015.
    lp = torch.tensor([[0.3]], dtype=torch.float64)
    loss, g, _ = grad_of(dro, lp, torch.zeros_like(lp), torch.zeros(1).double(), torch.ones(1, 1))
    assert float(loss) == pytest.approx(0.00225, abs=1e-12)
    assert float(g) == pytest.approx(0.015, abs=1e-12)


@pytest.mark.parametrize("beta", [None, 0.0, -0.1, math.nan, math.inf, True, "0.1"])
def test_dro_bad_beta(beta) -> None:
    lp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=rf"dro_beta must be a positive .*{re.escape(repr(beta))}"):
        dro(lp, lp, torch.ones(1), torch.ones(1, 2), dro_beta=beta)


# ---------------------------------------------------------------- parity with verl 0.9.1

SHAPES = [(1, 1), (3, 7), (8, 33)]


def verl_batch(seed: int, shape: tuple[int, int], *, per_token_adv: bool):
    """Random log-probs with |log r| up to ~3 (beyond every band, far below the clamp at 20),
    right padding (at least one valid token per row), mixed-sign advantages per token or per
    sequence."""
    g = torch.Generator().manual_seed(seed)
    B, T = shape
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3.0
    new = (old + torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=0.0)
    adv = torch.randn(B, T if per_token_adv else 1, generator=g, dtype=torch.float64)
    adv = adv.expand(B, T).clone()
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return old, new, adv, mask


def verl_config(v, policy_loss):
    """verl's ActorConfig with every setting at verl's default (clip_ratio_low / high 0.2);
    ``policy_loss``: a loss_mode (verl's own PolicyLossConfig) or a policy-loss config."""
    if isinstance(policy_loss, str):
        policy_loss = v.PolicyLossConfig(loss_mode=policy_loss)
    return v.ActorConfig(
        strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=policy_loss
    )


def run_verl(v, name: str, cfg, old, new, adv, mask, agg: str):
    lp = new.clone().requires_grad_(True)
    loss, metrics = v.core_algos.get_policy_loss_fn(name)(
        old, lp, adv, mask, loss_agg_mode=agg, config=cfg
    )
    loss.backward()
    return loss.detach(), lp.grad, metrics


# verl's geo_mean divides by (n_i + 1e-8) twice (the mean log-ratio and the mean advantage)
# where flexent divides by n_i: relative differences of order 1e-8 / n_i, hence rtol 1e-7.
GMPO_TOL = {"rtol": 1e-7, "atol": 1e-12}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_token_adv", [False, True], ids=["seq_adv", "token_adv"])
def test_gmpo_parity_with_verl_geo_mean(v, shape, per_token_adv: bool) -> None:
    """compute_policy_loss("gmpo", eps 0.2 / 0.2, seq-mean-token-mean) == verl's geo_mean under
    verl's default actor config (clip_ratio_low = clip_ratio_high = 0.2; geo_mean ignores
    loss_agg_mode, here verl's default token-mean): loss, gradient, actor/ppo_kl."""
    cfg = verl_config(v, "geo_mean")
    assert (cfg.clip_ratio_low, cfg.clip_ratio_high) == (0.2, 0.2)
    flat = 0.0
    for seed in range(4):
        old, new, adv, mask = verl_batch(seed, shape, per_token_adv=per_token_adv)
        loss_v, grad_v, m_v = run_verl(v, "geo_mean", cfg, old, new, adv, mask, "token-mean")
        lp = new.clone().requires_grad_(True)
        loss, m = compute_policy_loss(
            "gmpo", lp, old, adv, mask, eps_low=0.2, eps_high=0.2, agg_mode="seq-mean-token-mean"
        )
        loss.backward()
        torch.testing.assert_close(loss, loss_v, **GMPO_TOL)
        torch.testing.assert_close(lp.grad, grad_v, **GMPO_TOL)
        assert float(m["policy/kl_k1"]) == pytest.approx(m_v["actor/ppo_kl"], rel=1e-9)
        flat = max(flat, float(m["clip/frac"]))
    if shape != (1, 1):
        assert flat > 0  # the batches really clip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("beta", [0.05, 0.3])
def test_dro_parity_with_verl_dro(v, shape, agg: str, beta: float) -> None:
    """compute_policy_loss("dro", dro_beta=b) == verl's dro with policy_loss.dro_beta=b (verl has
    no default; 0.05 is flexent's), every other setting verl's default: bit for bit."""
    cfg = verl_config(v, v.PolicyLossConfig(loss_mode="dro", dro_beta=beta))
    for seed in range(4):
        old, new, adv, mask = verl_batch(seed, shape, per_token_adv=True)
        loss_v, grad_v, m_v = run_verl(v, "dro", cfg, old, new, adv, mask, agg)
        lp = new.clone().requires_grad_(True)
        params = {} if beta == 0.05 else {"dro_beta": beta}  # 0.05: flexent's default
        loss, m = compute_policy_loss("dro", lp, old, adv, mask, agg_mode=agg, **params)
        loss.backward()
        torch.testing.assert_close(loss, loss_v, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lp.grad, grad_v, rtol=1e-12, atol=1e-12)
        assert float(m["policy/kl_k1"]) == pytest.approx(m_v["actor/ppo_kl"], rel=1e-9)


# ---------------------------------------------------------------- departures from verl


def test_gmpo_departure_log_ratio_clamp(v) -> None:
    """flexent clamps log r to [-20, 20]; verl's geo_mean does not. It bites only on tokens the
    clip leaves free: A > 0 with log r < -20, or A < 0 with log r > 20."""
    cfg = verl_config(v, "geo_mean")
    mask = torch.ones(1, 2, dtype=torch.bool)
    old = torch.zeros(1, 2, dtype=torch.float64)
    # A = +1, log r = (-30, 0.1). flexent: s = exp((-20 + 0.1) / 2) = 4.772763e-5, the clamped
    # token has no gradient. verl: s = exp((-30 + 0.1) / 2) = 3.215863e-7, gradient -s / 2 on
    # both tokens (-1.607931e-7).
    new = torch.tensor([[-30.0, 0.1]], dtype=torch.float64)
    adv = torch.ones(1, 2, dtype=torch.float64)
    loss_v, grad_v, _ = run_verl(v, "geo_mean", cfg, old, new, adv, mask, "token-mean")
    loss, g, _ = grad_of(gmpo, new, old, adv, mask, eps_low=0.2, eps_high=0.2,
                         agg="seq-mean-token-mean")  # fmt: skip
    assert float(loss[0, 0]) == pytest.approx(-4.772763e-5, rel=1e-6)
    assert float(loss_v) == pytest.approx(-3.215863e-7, rel=1e-6)
    torch.testing.assert_close(g, torch.tensor([[0.0, -4.772763e-5 / 2]]).double(), rtol=1e-6,
                               atol=0)  # fmt: skip
    torch.testing.assert_close(grad_v, torch.full((1, 2), -1.607931e-7).double(), rtol=1e-6,
                               atol=0)  # fmt: skip
    # A = -1, log r = (800, 800): verl's exp(800) overflows to inf; flexent: s = exp(20), finite.
    new = torch.full((1, 2), 800.0, dtype=torch.float64)
    loss_v, _, _ = run_verl(v, "geo_mean", cfg, old, new, -adv, mask, "token-mean")
    assert math.isinf(float(loss_v))
    loss, g, _ = grad_of(gmpo, new, old, -adv, mask, agg="seq-mean-token-mean")
    assert float(loss[0, 0]) == pytest.approx(math.exp(20.0), rel=1e-12)
    assert torch.equal(g, torch.zeros(1, 2, dtype=torch.float64))


def test_gmpo_departure_empty_rows(v) -> None:
    """verl's geo_mean averages over every row (torch.mean), empty ones included;
    seq-mean-token-mean leaves them out. aggregate(..., num_seqs=B) (TRL's grpo normalisation)
    gives verl's value."""
    old, new, adv, mask = verl_batch(3, (4, 6), per_token_adv=False)
    mask[2] = False
    loss_v, _, _ = run_verl(v, "geo_mean", verl_config(v, "geo_mean"), old, new, adv, mask,
                            "token-mean")  # fmt: skip
    out = gmpo(new, old, adv, mask, eps_low=0.2, eps_high=0.2)
    every_row = aggregate(out.per_token_loss, mask, "seq-mean-token-mean", num_seqs=4)
    torch.testing.assert_close(every_row, loss_v, **GMPO_TOL)
    non_empty = aggregate(out.per_token_loss, mask, "seq-mean-token-mean")
    torch.testing.assert_close(non_empty, loss_v * 4 / 3, **GMPO_TOL)


def test_dro_departure_default_beta(v) -> None:
    """verl's dro refuses its default dro_beta (null); flexent's default is 0.05."""
    old, new, adv, mask = verl_batch(1, (3, 7), per_token_adv=True)
    with pytest.raises(ValueError, match="dro_beta must be a positive value"):
        run_verl(v, "dro", verl_config(v, "dro"), old, new, adv, mask, "token-mean")
    cfg = verl_config(v, v.PolicyLossConfig(loss_mode="dro", dro_beta=0.05))
    loss_v, _, _ = run_verl(v, "dro", cfg, old, new, adv, mask, "token-mean")
    loss, _ = compute_policy_loss("dro", new, old, adv, mask)
    torch.testing.assert_close(loss, loss_v, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- through the verl plugin


@pytest.fixture
def plugin(v, monkeypatch):
    """``flexent_gmpo`` / ``flexent_dro`` in verl's registry, built by the plugin's own
    ``make_verl_loss`` (what ``register_all`` does at ``import verl`` for the losses that
    ``flexent.losses`` imports), removed again after the test."""
    from flexent.integrations.verl.loss import make_verl_loss

    for name in ("gmpo", "dro"):
        monkeypatch.setitem(v.core_algos.POLICY_LOSS_REGISTRY, f"flexent_{name}",
                            make_verl_loss(name))  # fmt: skip
    return v


def test_gmpo_through_the_verl_plugin(plugin) -> None:
    """flexent_gmpo with verl's default clip ratios and seq-mean-token-mean (verl's agg_loss on
    the spread per-token loss) equals verl's geo_mean, under verl's PolicyLossConfig and under
    flexent's; token-mean warns (the declared default_agg)."""
    v = plugin
    old, new, adv, mask = verl_batch(5, (6, 11), per_token_adv=False)
    loss_v, grad_v, m_v = run_verl(v, "geo_mean", verl_config(v, "geo_mean"), old, new, adv, mask,
                                   "token-mean")  # fmt: skip
    cfg = verl_config(v, "flexent_gmpo")
    loss, grad, m = run_verl(v, "flexent_gmpo", cfg, old, new, adv, mask, "seq-mean-token-mean")
    torch.testing.assert_close(loss, loss_v, **GMPO_TOL)
    torch.testing.assert_close(grad, grad_v, **GMPO_TOL)
    assert m["actor/ppo_kl"] == pytest.approx(m_v["actor/ppo_kl"], rel=1e-9)
    assert "actor/gmpo/seq_ratio_mean" in m
    # flexent's own policy-loss config (strategy static: eps = clip_ratio_low / high) gives the
    # same value, and warns when the run aggregates with another mode than the declared one.
    from flexent.integrations.verl import FlexentPolicyLossConfig

    cfg = verl_config(v, FlexentPolicyLossConfig(loss_mode="flexent_gmpo"))
    loss, _, _ = run_verl(v, "flexent_gmpo", cfg, old, new, adv, mask, "seq-mean-token-mean")
    torch.testing.assert_close(loss, loss_v, **GMPO_TOL)
    cfg = verl_config(v, FlexentPolicyLossConfig(loss_mode="flexent_gmpo"))
    with pytest.warns(UserWarning, match="gmpo aggregates with token-mean.*seq-mean-token-mean"):
        run_verl(v, "flexent_gmpo", cfg, old, new, adv, mask, "token-mean")


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_dro_through_the_verl_plugin(plugin, agg: str) -> None:
    """flexent_dro with loss_params.dro_beta equals verl's dro with policy_loss.dro_beta, in
    each aggregation mode."""
    from flexent.integrations.verl import FlexentPolicyLossConfig

    v = plugin
    old, new, adv, mask = verl_batch(6, (6, 11), per_token_adv=True)
    cfg_v = verl_config(v, v.PolicyLossConfig(loss_mode="dro", dro_beta=0.3))
    loss_v, grad_v, _ = run_verl(v, "dro", cfg_v, old, new, adv, mask, agg)
    pl = FlexentPolicyLossConfig(loss_mode="flexent_dro", loss_params={"dro_beta": 0.3})
    loss, grad, m = run_verl(v, "flexent_dro", verl_config(v, pl), old, new, adv, mask, agg)
    torch.testing.assert_close(loss, loss_v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_v, rtol=1e-12, atol=1e-12)
    assert m["actor/dro/penalty_mean"] > 0

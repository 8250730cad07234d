"""CISPO, DPPO-Binary-TV/KL and ASPO: hand-derived values and gradients, straight-line references
with per-token thresholds, and parity with verl 0.9.1's own cispo / dppo_tv / dppo_kl."""

from __future__ import annotations

import math

import pytest
import torch

from flexent.losses import (
    LossTraits,
    aspo,
    cispo,
    compute_policy_loss,
    dppo_kl,
    dppo_tv,
    loss_traits,
)


def grad_of(fn, logprobs: torch.Tensor, *args, **kwargs):
    lp = logprobs.detach().clone().requires_grad_(True)
    out = fn(lp, *args, **kwargs)
    (g,) = torch.autograd.grad(out.per_token_loss.sum(), lp)
    return out.per_token_loss.detach(), g, out.metrics


def two_rows(q: float, probs: list[float]):
    """Old probability q on every token, new probabilities ``probs``; A = +1 row, A = -1 row."""
    old = torch.full((2, 3), math.log(q), dtype=torch.float64)
    lp = torch.tensor([probs, probs], dtype=torch.float64).log()
    return (
        lp,
        old,
        torch.tensor([1.0, -1.0], dtype=torch.float64),
        torch.ones(2, 3, dtype=torch.bool),
    )


def test_traits() -> None:
    # token-level, no random draws; CISPO's paper and ASPO's code aggregate with token-mean
    for name in ("cispo", "aspo"):
        assert loss_traits(name) == LossTraits(default_agg="token-mean")
    for name in ("dppo_tv", "dppo_kl"):
        assert loss_traits(name) == LossTraits()


# ---------------------------------------------------------------- CISPO


def test_cispo_hand_values_and_gradient() -> None:
    # q = 0.5, p = 0.25, 0.5, 0.75: r = 0.5, 1.0, 1.5; eps 0.2 / 0.28, so w = 0.8, 1.0, 1.28
    # whatever the sign of A. loss = -w A ln p, gradient = -w A.
    # A = +1: -0.8 ln .25 = 1.109035;  -ln .5 = 0.693147;  -1.28 ln .75 = 0.368233
    # A = -1: the negatives.  Gradient: -0.8, -1, -1.28 and 0.8, 1, 1.28 (no token loses it).
    lp, old, adv, mask = two_rows(0.5, [0.25, 0.5, 0.75])
    loss, g, m = grad_of(cispo, lp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    row = torch.tensor([1.109035, 0.693147, 0.368233], dtype=torch.float64)
    torch.testing.assert_close(loss, torch.stack([row, -row]), atol=1e-6, rtol=0)
    w = torch.tensor([0.8, 1.0, 1.28], dtype=torch.float64)
    torch.testing.assert_close(g, torch.stack([-w, w]))
    # the weight is clipped on r = 0.5 and r = 1.5 in both rows: 4 of 6 tokens
    assert float(m["cispo/frac_weight_clipped"]) == pytest.approx(4 / 6)
    # the PPO-style sign-aware keys: A > 0 with r > 1.28, A < 0 with r < 0.8: 1 each
    assert float(m["clip/frac_high"]) == pytest.approx(1 / 6)
    assert float(m["clip/frac_low"]) == pytest.approx(1 / 6)


# ---------------------------------------------------------------- DPPO


def test_dppo_tv_drops_tokens_moved_too_far_in_the_advantage_direction() -> None:
    # q = 0.5, p = 0.6, 0.7, 0.3 (r = 1.2, 1.4, 0.6, p - q = 0.1, 0.2, -0.2), delta 0.15.
    # A = +1 drops p - q > 0.15: token 1.  A = -1 drops p - q < -0.15: token 2.
    # kept: loss = -A min(r, 3) ln p, gradient -A min(r, 3).
    # A = +1: -1.2 ln .6 = 0.612990, 0, -0.6 ln .3 = 0.722384;  gradient -1.2, 0, -0.6
    # A = -1: 1.2 ln .6 = -0.612990, 1.4 ln .7 = -0.499345, 0;  gradient 1.2, 1.4, 0
    lp, old, adv, mask = two_rows(0.5, [0.6, 0.7, 0.3])
    loss, g, m = grad_of(dppo_tv, lp, old, adv, mask, eps_low=0.15, eps_high=0.15)
    expected = torch.tensor([[0.612990, 0.0, 0.722384], [-0.612990, -0.499345, 0.0]])
    torch.testing.assert_close(loss, expected.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(g, torch.tensor([[-1.2, 0.0, -0.6], [1.2, 1.4, 0.0]]).double())
    assert float(m["clip/frac_high"]) == pytest.approx(1 / 6)
    assert float(m["clip/frac_low"]) == pytest.approx(1 / 6)
    assert float(m["dppo/frac_truncated"]) == 0.0  # no kept r above 3
    # clip_c = 1.3 truncates the kept r = 1.4 (A = -1): loss 1.3 ln .7 = -0.463677, gradient 1.3;
    # r = 1.2 stays.  1 truncated token of 6.
    loss, g, m = grad_of(dppo_tv, lp, old, adv, mask, eps_low=0.15, eps_high=0.15, clip_c=1.3)
    assert float(loss[1, 1]) == pytest.approx(-0.463677, abs=1e-6)
    assert float(g[1, 1]) == pytest.approx(1.3)
    assert float(m["dppo/frac_truncated"]) == pytest.approx(1 / 6)
    # no truncation at all: the metric is not returned
    _, _, m = grad_of(dppo_tv, lp, old, adv, mask, clip_c=None)
    assert "dppo/frac_truncated" not in m


def test_dppo_tv_is_ppo_clip_with_width_delta_over_q() -> None:
    # A > 0: p - q > delta  <=>  r > 1 + delta / q.  q = 0.1, delta 0.15: the ratio bound is 2.5,
    # so r = 2.4 is kept and r = 2.6 dropped, where a PPO clip of 0.2 would drop both.
    old = torch.full((1, 2), math.log(0.1), dtype=torch.float64)
    lp = old + torch.tensor([[2.4, 2.6]], dtype=torch.float64).log()
    _, g, _ = grad_of(dppo_tv, lp, old, torch.tensor([1.0]).double(), torch.ones(1, 2))
    torch.testing.assert_close(g, torch.tensor([[-2.4, 0.0]], dtype=torch.float64))


def test_dppo_kl_binary_kl_and_harmless_direction() -> None:
    # q = 0.5: KL(Bern(.5) || Bern(p)) = -0.5 ln(4 p (1 - p)).  p = 0.6, 0.9, 0.2:
    # kl = 0.020411, 0.510826, 0.223144; r = 1.2, 1.8, 0.4; delta 0.05.
    # A = +1: token 1 rose (p > q) with kl > 0.05: dropped; token 2 fell (harmless for A > 0): kept.
    #   loss -1.2 ln .6 = 0.612990, 0, -0.4 ln .2 = 0.643775; gradient -1.2, 0, -0.4
    # A = -1: tokens 0, 1 rose (harmless for A < 0): kept; token 2 fell with kl > 0.05: dropped.
    #   loss 1.2 ln .6 = -0.612990, 1.8 ln .9 = -0.189649, 0; gradient 1.2, 1.8, 0
    lp, old, adv, mask = two_rows(0.5, [0.6, 0.9, 0.2])
    loss, g, m = grad_of(dppo_kl, lp, old, adv, mask, eps_low=0.05, eps_high=0.05)
    expected = torch.tensor([[0.612990, 0.0, 0.643775], [-0.612990, -0.189649, 0.0]])
    torch.testing.assert_close(loss, expected.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(g, torch.tensor([[-1.2, 0.0, -0.4], [1.2, 1.8, 0.0]]).double())
    assert float(m["clip/frac"]) == pytest.approx(2 / 6)
    # a threshold above the largest kl (0.51) keeps every token
    _, g, _ = grad_of(dppo_kl, lp, old, adv, mask, eps_low=0.6, eps_high=0.6)
    assert (g != 0).all()


@pytest.mark.parametrize("fn", [dppo_tv, dppo_kl])
def test_dppo_bad_clip_c(fn) -> None:
    lp, old, adv, mask = two_rows(0.5, [0.6, 0.7, 0.3])
    with pytest.raises(ValueError, match="clip_c must be a finite float > 0"):
        fn(lp, old, adv, mask, clip_c=0.0)


# ---------------------------------------------------------------- ASPO


def test_aspo_hand_values_and_gradient() -> None:
    # q = 0.2; eps 0.2 / 0.2, clip_c = clip_c_pos = 3.
    # A = +1, r = 0.25, 0.8, 1.5 (p = 0.05, 0.16, 0.3):
    #   r = 0.25: 1/r = 4 > 3, soft dual clip: loss -3 ln .05 = 8.987197, gradient -3
    #   r = 0.8:  flipped weight: loss -1/0.8 = -1.25, gradient -1/r = -1.25
    #   r = 1.5 > 1.2: clipped: loss -1/1.2 = -0.833333, gradient 0
    # A = -1, r = 0.5, 1.5, 4 (p = 0.1, 0.3, 0.8):
    #   r = 0.5 < 0.8: clipped: loss 0.8, gradient 0
    #   r = 1.5: loss r = 1.5, gradient r = 1.5 (PPO's weight, unchanged)
    #   r = 4 > 3: soft dual clip: loss 3 ln .8 = -0.669431, gradient 3
    old = torch.full((2, 3), math.log(0.2), dtype=torch.float64)
    r = torch.tensor([[0.25, 0.8, 1.5], [0.5, 1.5, 4.0]], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, g, m = grad_of(aspo, old + r.log(), old, adv, torch.ones(2, 3))
    expected = torch.tensor([[8.987197, -1.25, -0.833333], [0.8, 1.5, -0.669431]])
    torch.testing.assert_close(loss, expected.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(g, torch.tensor([[-3.0, -1.25, 0.0], [0.0, 1.5, 3.0]]).double())
    for key in ("clip/frac_high", "clip/frac_low", "clip/frac_dual", "aspo/frac_dual_pos"):
        assert float(m[key]) == pytest.approx(1 / 6), key


def test_aspo_positive_weight_falls_with_the_ratio_where_ppo_rises() -> None:
    # A = +1, r from 0.4 to 1.15 (inside [1/3, 1.2]): ASPO's gradient magnitude is 1/r, decreasing;
    # PPO's is r, increasing. Both are continuous at the dual clip: 1/r -> 3 as r -> 1/3.
    r = torch.linspace(0.4, 1.15, 7, dtype=torch.float64)[None, :]
    _, g, _ = grad_of(
        aspo, r.log(), torch.zeros_like(r), torch.ones(1).double(), torch.ones_like(r)
    )
    torch.testing.assert_close(g, -1.0 / r)
    assert (g.abs().diff() < 0).all()
    edge = torch.tensor([[1 / 3 - 1e-9, 1 / 3 + 1e-9]], dtype=torch.float64)
    _, g, _ = grad_of(
        aspo, edge.log(), torch.zeros_like(edge), torch.ones(1).double(), torch.ones(1, 2)
    )
    torch.testing.assert_close(g, torch.full((1, 2), -3.0, dtype=torch.float64))


def test_aspo_bad_dual_clip() -> None:
    lp, old, adv, mask = two_rows(0.5, [0.6, 0.7, 0.3])
    with pytest.raises(ValueError, match="clip_c_pos must be a finite float > 1"):
        aspo(lp, old, adv, mask, clip_c_pos=1.0)


# ---------------------------------------------------------------- straight-line references


def reference(name: str, lp, old, adv, mask, el, eh, c):
    """Per-token loss and d loss / d logprob over Python floats, one token at a time."""
    B, T = len(lp), len(lp[0])
    loss = [[0.0] * T for _ in range(B)]
    grad = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if not mask[b][t]:
                continue
            a, x = adv[b][t], lp[b][t]
            lo, hi = 1 - el[b][t], 1 + eh[b][t]
            r = math.exp(x - old[b][t])
            p, q = math.exp(x), math.exp(old[b][t])
            if name == "cispo":
                w = min(max(r, lo), hi)
                loss[b][t], grad[b][t] = -w * a * x, -w * a
            elif name in ("dppo_tv", "dppo_kl"):
                if name == "dppo_tv":
                    drop = p - q > eh[b][t] if a > 0 else p - q < -el[b][t]
                else:
                    kl = q * (old[b][t] - x) + (1 - q) * math.log((1 - q + 1e-8) / (1 - p + 1e-8))
                    drop = (kl > eh[b][t] and p > q) if a > 0 else (kl > el[b][t] and p < q)
                w = min(r, c)
                loss[b][t], grad[b][t] = (0.0, 0.0) if drop else (-a * w * x, -a * w)
            elif a < 0:  # aspo
                if r > c:
                    loss[b][t], grad[b][t] = -a * c * x, -a * c
                elif r < lo:
                    loss[b][t], grad[b][t] = -a * lo, 0.0
                else:
                    loss[b][t], grad[b][t] = -a * r, -a * r
            elif 1 / r > c:
                loss[b][t], grad[b][t] = -a * c * x, -a * c
            elif r > hi:
                loss[b][t], grad[b][t] = -a / hi, 0.0
            else:
                loss[b][t], grad[b][t] = -a / r, -a / r
    return torch.tensor(loss, dtype=torch.float64), torch.tensor(grad, dtype=torch.float64)


@pytest.mark.parametrize("name", ["cispo", "dppo_tv", "dppo_kl", "aspo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_straight_line_reference_with_per_token_thresholds(name: str, seed: int) -> None:
    # Per-token eps as the Archer2.0 recipe uses them (0.2 on most tokens, 0.4 on the others),
    # scaled down for the divergence thresholds of DPPO.
    g = torch.Generator().manual_seed(seed)
    B, T = 4, 9
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    lp = (old + 0.8 * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=-1e-3)
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.rand(B, T, generator=g) > 0.2
    scale = {"dppo_tv": 0.5, "dppo_kl": 0.25}.get(name, 1.0)
    wide = torch.rand(B, T, generator=g) > 0.8
    el = torch.where(wide, 0.4, 0.2).double() * scale
    eh = torch.where(wide.roll(1, 1), 0.4, 0.2).double() * scale
    from flexent.losses import get_policy_loss

    loss, grad, _ = grad_of(get_policy_loss(name), lp, old, adv, mask, eps_low=el, eps_high=eh)
    ref_loss, ref_grad = reference(
        name, lp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), el.tolist(), eh.tolist(), 3.0
    )
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    assert (grad[mask] != 0).any()
    if name != "cispo":  # cispo keeps every gradient; the others really drop or clip some
        assert (grad[mask] == 0).any()


# ---------------------------------------------------------------- parity with verl 0.9.1

# flexent eps (eps_low, eps_high) per loss: verl's clip_ratio_low / clip_ratio_high.
VERL_EPS = {"cispo": (0.2, 0.28), "dppo_tv": (0.15, 0.1), "dppo_kl": (0.05, 0.02)}
SHAPES = [(1, 1), (3, 7), (8, 33)]


def verl_batch(seed: int, shape: tuple[int, int]):
    """Random log-probs with ratios well beyond every band (|log r| up to ~3), right padding
    (at least one valid token), mixed-sign advantages per token."""
    g = torch.Generator().manual_seed(seed)
    B, T = shape
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3.0
    new = (old + torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=0.0)
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return old, new, adv, mask


def _verl_config(v, name: str):
    low, high = VERL_EPS[name]
    return v.ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        policy_loss=v.PolicyLossConfig(loss_mode=name),
        clip_ratio_low=low,
        clip_ratio_high=high,
    )


# flexent key for each of verl's metrics that the two losses share.
SHARED = {
    "cispo": {"actor/ppo_kl": "policy/kl_k1", "actor/pg_clipfrac": "cispo/frac_weight_clipped"},
    "dppo_tv": {
        "actor/ppo_kl": "policy/kl_k1",
        "actor/pg_clipfrac": "clip/frac",
        "actor/pg_clipfrac_lower": "dppo/frac_truncated",
    },
}
SHARED["dppo_kl"] = SHARED["dppo_tv"]


@pytest.mark.parametrize("name", ["cispo", "dppo_tv", "dppo_kl"])
@pytest.mark.parametrize("shape", SHAPES)
def test_parity_with_verl_token_mean(v, name: str, shape) -> None:
    """compute_policy_loss(name, eps_low=x, eps_high=y) == verl's loss of the same name with
    clip_ratio_low=x, clip_ratio_high=y (every other setting verl's default): loss, gradient
    with respect to the log-probs, and the shared metrics."""
    cfg = _verl_config(v, name)
    verl_fn = v.core_algos.get_policy_loss_fn(name)
    low, high = VERL_EPS[name]
    exercised = {key: 0.0 for key in SHARED[name] if key != "actor/ppo_kl"}
    for seed in range(4):
        old, new, adv, mask = verl_batch(seed, shape)
        lp_verl = new.clone().requires_grad_(True)
        loss_verl, m_verl = verl_fn(old, lp_verl, adv, mask, loss_agg_mode="token-mean", config=cfg)
        loss_verl.backward()
        lp = new.clone().requires_grad_(True)
        loss, m = compute_policy_loss(name, lp, old, adv, mask, eps_low=low, eps_high=high)
        loss.backward()
        torch.testing.assert_close(loss, loss_verl, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lp.grad, lp_verl.grad, rtol=1e-12, atol=1e-12)
        for verl_key, key in SHARED[name].items():
            assert float(m[key]) == pytest.approx(m_verl[verl_key], rel=1e-6, abs=1e-12), key
            if verl_key in exercised:
                exercised[verl_key] = max(exercised[verl_key], m_verl[verl_key])
    if shape != (1, 1):  # the batches really drop / clip / truncate tokens
        assert all(val > 0 for val in exercised.values()), exercised


AGG_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


@pytest.mark.parametrize("name", ["cispo", "dppo_tv", "dppo_kl"])
@pytest.mark.parametrize("agg", AGG_MODES)
def test_verl_plugin_matches_verl(v, name: str, agg: str) -> None:
    """``flexent_<name>`` in verl's registry, with verl's own PolicyLossConfig, equals verl's
    ``<name>`` in every aggregation mode (verl's agg_loss and global_batch_info)."""
    cfg = _verl_config(v, name)
    plugin_cfg = v.ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        policy_loss=v.PolicyLossConfig(loss_mode=f"flexent_{name}"),
        clip_ratio_low=cfg.clip_ratio_low,
        clip_ratio_high=cfg.clip_ratio_high,
    )
    old, new, adv, mask = verl_batch(5, (6, 11))
    grads, losses, metrics = [], [], []
    for fn_name, c in ((name, cfg), (f"flexent_{name}", plugin_cfg)):
        lp = new.clone().requires_grad_(True)
        loss, m = v.core_algos.get_policy_loss_fn(fn_name)(old, lp, adv, mask, agg, c)
        loss.backward()
        grads.append(lp.grad)
        losses.append(loss.detach())
        metrics.append(m)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12)
    assert metrics[1]["actor/ppo_kl"] == pytest.approx(metrics[0]["actor/ppo_kl"], rel=1e-9)


def test_aspo_runs_through_the_verl_plugin(v) -> None:
    """``flexent_aspo`` reads its negative dual clip from verl's ``actor.clip_ratio_c``."""
    old, new, adv, mask = verl_batch(6, (8, 33))
    out = []
    for c in (3.0, 10.0):
        cfg = v.ActorConfig(
            strategy="fsdp",
            rollout_n=1,
            ppo_micro_batch_size_per_gpu=1,
            policy_loss=v.PolicyLossConfig(loss_mode="flexent_aspo"),
            clip_ratio_c=c,
        )
        loss, m = v.core_algos.get_policy_loss_fn("flexent_aspo")(
            old, new, adv, mask, "token-mean", cfg
        )
        direct, _ = compute_policy_loss(
            "aspo", new, old, adv, mask, eps_low=0.2, eps_high=0.2, clip_c=c
        )
        torch.testing.assert_close(loss, direct, rtol=1e-12, atol=1e-12)
        out.append(m["actor/clip/frac_dual"])
    assert out[0] > out[1]  # fewer tokens above r = 10 than above r = 3


def _bapo_reference(ratio, adv, mask, *, lo, hi, target, lo_max, lo_step, hi_max, hi_step):
    """WooooDyy/BAPO's bound search, transcribed with its scalar loops (recipe/bapo/
    policy_loss.py at 7287044): returns the chosen (lo, hi)."""

    def balance(lo, hi):
        eff = torch.where(adv >= 0, torch.minimum(ratio, torch.tensor(hi)),
                          torch.maximum(ratio, torch.tensor(lo)))  # fmt: skip
        c = eff * adv * mask
        pos, neg = c.clamp(min=0).sum(), (-c.clamp(max=0)).sum()
        return float("inf") if neg <= 0 else float(pos / (neg + 1e-8))

    b = balance(lo, hi)
    while b < target and lo < lo_max and lo_step > 0:
        lo = min(lo + lo_step, lo_max)
        b = balance(lo, hi)
        if b >= target:
            break
    while b < target and hi < hi_max and hi_step > 0:
        hi = min(hi + hi_step, hi_max)
        b = balance(lo, hi)
        if b >= target:
            break
    return lo, hi


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.3, 0.5, 1.0, 3.0])
def test_bapo_bounds_equal_the_reference_search(seed, target):
    from flexent.losses import bapo

    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 2
    new = old + torch.randn(4, 6, generator=g, dtype=torch.float64) * 0.4
    adv = torch.randn(4, 1, generator=g, dtype=torch.float64).expand(4, 6).clone()
    mask = torch.rand(4, 6, generator=g) > 0.2
    out = bapo(new, old, adv, mask, target=target)
    ratio = torch.where(mask, (new - old).exp(), torch.ones(()))
    lo, hi = _bapo_reference(ratio, torch.where(mask, adv, torch.zeros(())), mask, lo=0.8,
                             hi=1.2, target=target, lo_max=0.95, lo_step=0.05, hi_max=2.0,
                             hi_step=0.1)  # fmt: skip
    assert float(out.metrics["bapo/lo_shift"]) == pytest.approx(lo - 0.8)
    assert float(out.metrics["bapo/hi_shift"]) == pytest.approx(hi - 1.2)
    # the loss is ppo_clip with those ratio bounds and the dual clip 3
    from flexent.losses import ppo_clip

    ref = ppo_clip(new, old, adv, mask, eps_low=1 - lo, eps_high=hi - 1, clip_c=3.0)
    torch.testing.assert_close(out.per_token_loss, ref.per_token_loss)

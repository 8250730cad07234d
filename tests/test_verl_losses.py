"""flexent's losses in verl's registry: parity with verl's own losses, verl's keys, warnings."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("verl")

from verl_support import actor_config, batch

AGG_MODES = [
    "token-mean",
    "token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
]
GLOBAL_INFO = [
    {},
    {"dp_size": 2, "batch_num_tokens": 37, "global_batch_size": 9, "loss_scale_factor": 11},
]


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("info", GLOBAL_INFO, ids=["local", "global_batch_info"])
def test_static_matches_verl_vanilla(v, agg, info):
    flexent_fn = v.core_algos.get_policy_loss_fn("flexent_ppo_clip")
    vanilla = v.core_algos.get_policy_loss_fn("vanilla")
    cfg = actor_config(v)  # strategy static, clip_ratio_low 0.2, clip_ratio_high 0.28
    cfg.global_batch_info.update(info)
    for seed in range(3):
        old, new, adv, mask = batch(seed)
        outs = []
        for fn in (flexent_fn, vanilla):
            lp = new.clone().requires_grad_(True)
            loss, metrics = fn(old, lp, adv, mask, loss_agg_mode=agg, config=cfg)
            loss.backward()
            outs.append((loss.detach(), lp.grad, metrics))
        (l1, g1, m1), (l2, g2, m2) = outs
        torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
        for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
            assert m1[key] == pytest.approx(m2[key], rel=1e-6, abs=1e-9), key
        assert m1["actor/pg_clipfrac"] > 0  # the batch really exercises the clip


def test_static_rollout_is_weights_match_vanilla(v):
    cfg = actor_config(v)
    old, new, adv, mask = batch(7)
    w = torch.rand(old.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a, _ = v.core_algos.get_policy_loss_fn("flexent_ppo_clip")(
        old, new, adv, mask, "token-mean", cfg, w
    )
    b, _ = v.core_algos.get_policy_loss_fn("vanilla")(old, new, adv, mask, "token-mean", cfg, w)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dynamic_thresholds_follow_the_formula(v):
    """strategy dynamic (w = 1, 1): eps_high = clamp((1 + 0.5)/(1 + 0.25 p) - 1, 0.05, 0.6),
    eps_low = clamp(1 - 0.7/(1 - 0.13 p), 0.05, 0.6) per token (docs/method.md §3, implicit
    mode)."""
    from flexent.integrations.verl import FlexentPolicyLossConfig

    cfg = actor_config(v, FlexentPolicyLossConfig(strategy="dynamic"))
    old, new, adv, mask = batch(3)
    _, m = v.core_algos.get_policy_loss_fn("flexent_ppo_clip")(
        old, new, adv, mask, "token-mean", cfg
    )
    p = old.exp()
    eh = ((1.5 / (1 + 0.25 * p)) - 1).clamp(0.05, 0.6)
    el = (1 - 0.7 / (1 - 0.13 * p)).clamp(0.05, 0.6)
    assert m["actor/clip/eps_high_mean"] == pytest.approx(float(eh[mask].mean()), rel=1e-9)
    assert m["actor/clip/eps_low_mean"] == pytest.approx(float(el[mask].mean()), rel=1e-9)
    assert (m["actor/control/w_up"], m["actor/control/w_low"]) == (1.0, 1.0)


def test_ce_gppo_works_with_plain_verl_config(v):
    """loss_mode=flexent_ce_gppo alone (verl's own PolicyLossConfig) uses clip_ratio_low/high."""
    cfg = actor_config(v, v.PolicyLossConfig(loss_mode="flexent_ce_gppo"))
    old, new, adv, mask = batch(4)
    lp = new.clone().requires_grad_(True)
    loss, m = v.core_algos.get_policy_loss_fn("flexent_ce_gppo")(
        old, lp, adv, mask, "token-mean", cfg
    )
    loss.backward()
    # CE-GPPO keeps a gradient on out-of-band tokens: every valid token with A != 0 has one.
    assert bool((lp.grad[mask] != 0).all())
    assert m["actor/clip/eps_high_mean"] == pytest.approx(0.28)
    assert m["actor/clip/eps_low_mean"] == pytest.approx(0.2)


# --- verl's own loss keys -------------------------------------------------------------------


def test_verl_kl_cov_keys_are_the_fallback(v):
    """policy_loss.kl_cov_ratio / ppo_kl_coef reach flexent_kl_cov when loss_params lacks them:
    the result equals flexent's kl_cov called with those values (token-mean = masked mean)."""
    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.losses import get_policy_loss

    pl = FlexentPolicyLossConfig(loss_mode="flexent_kl_cov", kl_cov_ratio=0.5, ppo_kl_coef=0.3)
    cfg = actor_config(v, pl)
    old, new, adv, mask = batch(8)
    loss, m = v.core_algos.get_policy_loss_fn("flexent_kl_cov")(
        old, new, adv, mask, "token-mean", cfg
    )
    ref = get_policy_loss("kl_cov")(
        new, old, adv, mask, eps_low=0.2, eps_high=0.28, kl_cov_ratio=0.5, kl_coef=0.3
    )
    want = ref.per_token_loss[mask].mean()
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
    n = int(mask.sum())
    assert m["actor/kl_cov/frac_penalised"] == pytest.approx((n // 2) / n)


def test_verl_tau_keys_reach_flexent_sapo(v):
    """actor.tau_pos / tau_neg drive flexent_sapo: equal to verl's own sapo (which reads the same
    keys) under seq-mean-token-mean, the mode verl's sapo forces."""
    from flexent.integrations.verl import FlexentPolicyLossConfig

    cfg = actor_config(
        v, FlexentPolicyLossConfig(loss_mode="flexent_sapo"), tau_pos=2.0, tau_neg=3.0
    )
    old, new, adv, mask = batch(9)
    a, _ = v.core_algos.get_policy_loss_fn("flexent_sapo")(
        old, new, adv, mask, "seq-mean-token-mean", cfg
    )
    b, _ = v.core_algos.get_policy_loss_fn("sapo")(old, new, adv, mask, "seq-mean-token-mean", cfg)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_verl_keys_resolution_and_conflicts(v):
    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.integrations.verl.config import verl_loss_params

    pl = FlexentPolicyLossConfig(
        loss_mode="flexent_clip_cov", clip_cov_ratio=0.01, clip_cov_lb=-2.0, clip_cov_ub=7.0
    )
    got = verl_loss_params("clip_cov", actor_config(v, pl))
    assert got == {"clip_cov_ratio": 0.01, "clip_cov_lb": -2.0, "clip_cov_ub": 7.0}
    # loss_params wins; a verl key left at verl's default is not "given": no conflict
    # (the paper recipe sets loss_params.kl_coef=1.0 while ppo_kl_coef stays 0.1).
    pl = FlexentPolicyLossConfig(loss_mode="flexent_kl_cov", loss_params={"kl_coef": 1.0})
    got = verl_loss_params("kl_cov", actor_config(v, pl))
    assert got == {"kl_coef": 1.0, "kl_cov_ratio": 0.0002}
    # both given and equal: fine
    FlexentPolicyLossConfig(
        loss_mode="flexent_kl_cov", kl_cov_ratio=0.002, loss_params={"kl_cov_ratio": 0.002}
    )
    with pytest.raises(ValueError, match=r"policy_loss.kl_cov_ratio=0.5.*loss_params.kl_cov_ratio"):
        FlexentPolicyLossConfig(
            loss_mode="flexent_kl_cov", kl_cov_ratio=0.5, loss_params={"kl_cov_ratio": 0.1}
        )
    pl = FlexentPolicyLossConfig(loss_mode="flexent_sapo", loss_params={"tau_pos": 1.5})
    with pytest.raises(ValueError, match=r"actor.tau_pos=2.0.*loss_params.tau_pos=1.5"):
        verl_loss_params("sapo", actor_config(v, pl, tau_pos=2.0))
    pl = FlexentPolicyLossConfig(loss_mode="flexent_ppo_clip")
    assert verl_loss_params("ppo_clip", actor_config(v, pl, clip_ratio_c=4.0)) == {"clip_c": 4.0}


def test_sapo_agg_mode_and_gspo_clip_ratios_warn(v):
    """verl's sapo forces seq-mean-token-mean; flexent_sapo keeps actor.loss_agg_mode and warns.
    GSPO clips a sequence ratio: token-level clip ratios (0.2 / 0.28) warn, 3e-4 / 4e-4 do not."""
    import warnings

    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.integrations.verl.config import config_warnings

    old, new, adv, mask = batch(10)
    sapo = actor_config(v, FlexentPolicyLossConfig(loss_mode="flexent_sapo"))
    fn = v.core_algos.get_policy_loss_fn("flexent_sapo")
    with pytest.warns(UserWarning, match="seq-mean-token-mean"):
        fn(old, new, adv, mask, "token-mean", sapo)
    assert config_warnings(actor_config(v, FlexentPolicyLossConfig(loss_mode="flexent_sapo"))) != []
    ok = actor_config(
        v, FlexentPolicyLossConfig(loss_mode="flexent_sapo"), loss_agg_mode="seq-mean-token-mean"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(old, new, adv, mask, "seq-mean-token-mean", ok)
    gspo = actor_config(v, FlexentPolicyLossConfig(loss_mode="flexent_gspo"))
    assert any("3e-4" in w for w in config_warnings(gspo))
    tight = actor_config(
        v,
        FlexentPolicyLossConfig(loss_mode="flexent_gspo"),
        clip_ratio_low=3e-4,
        clip_ratio_high=4e-4,
    )
    # the GSPO paper aggregates per sequence too (the loss's trait): token-mean is flagged
    assert [w for w in config_warnings(tight) if "3e-4" in w] == []
    assert any("seq-mean-token-mean" in w for w in config_warnings(tight))
    assert config_warnings(tight, "seq-mean-token-mean") == []


@pytest.mark.parametrize("strategy", ["dynamic", "id", "did", "od", "target"])
def test_gspo_refuses_dynamic_strategies(v, strategy):
    """The thresholds are per token, GSPO's ratio is per sequence: only static makes sense."""
    from flexent.integrations.verl import FlexentPolicyLossConfig

    with pytest.raises(ValueError, match=r"policy_loss.strategy: .*'gspo'.*only strategy 'static'"):
        FlexentPolicyLossConfig(loss_mode="flexent_gspo", strategy=strategy)
    FlexentPolicyLossConfig(loss_mode="flexent_gspo", strategy="static")

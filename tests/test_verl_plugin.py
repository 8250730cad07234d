"""flexent's verl plugin against the real verl 0.9.1 (CPU).

verl takes many seconds to import, so one module-scoped fixture imports it (and composes verl's
real Hydra config once); every test reuses them.
"""

from __future__ import annotations

import math
import os
import sys
import types
from importlib.metadata import entry_points

import pytest
import torch

verl = pytest.importorskip("verl")

FLEXENT_TARGET = "flexent.integrations.verl.FlexentPolicyLossConfig"
NAMES = [
    "flexent_ce_gppo",
    "flexent_clip_cov",
    "flexent_gspo",
    "flexent_kl_cov",
    "flexent_ppo_clip",
    "flexent_sapo",
]


@pytest.fixture(scope="module")
def v():
    """verl's modules, imported once, plus a composer for verl's real ppo_trainer config."""
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo import core_algos
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import ActorConfig, PolicyLossConfig
    from verl.workers.utils import losses

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")

    def compose_cfg(overrides: list[str]):
        with initialize_config_dir(config_dir=cfg_dir, version_base=None):
            return compose(config_name="ppo_trainer", overrides=overrides)

    return types.SimpleNamespace(
        core_algos=core_algos,
        losses=losses,
        to_dataclass=omega_conf_to_dataclass,
        ActorConfig=ActorConfig,
        PolicyLossConfig=PolicyLossConfig,
        compose=compose_cfg,
    )


def actor_config(v, policy_loss=None, **kw):
    from flexent.integrations.verl import FlexentPolicyLossConfig

    kw.setdefault("clip_ratio_low", 0.2)
    kw.setdefault("clip_ratio_high", 0.28)
    return v.ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        policy_loss=policy_loss or FlexentPolicyLossConfig(loss_mode="flexent_ppo_clip"),
        **kw,
    )


def batch(seed: int, B: int = 4, T: int = 7):
    """old/new log-probs with ratios well outside [0.8, 1.28], mixed-sign advantages, padding."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3.0
    new = (old + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.5).clamp(max=0.0)
    adv = torch.randn(B, 1, generator=g, dtype=torch.float64).expand(B, T).clone()
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return old, new, adv, mask


# --- registration ----------------------------------------------------------------------------


def test_entry_point_declared_and_loaded_by_import_verl(v):
    eps = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert eps.get("flexent") == "flexent.integrations.verl"
    # verl's __init__ loads the group, so `import verl` alone imported the plugin ...
    assert "flexent.integrations.verl" in sys.modules
    registry = v.core_algos.POLICY_LOSS_REGISTRY
    assert sorted(n for n in registry if n.startswith("flexent_")) == NAMES
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

    assert TRAINER_REGISTRY["flexent_sync"].__name__ == "FlexentPPOTrainer"


def test_missing_loss_fails_loudly(v, monkeypatch):
    from flexent.integrations.verl import FlexentPolicyLossConfig, check_registered

    monkeypatch.delitem(v.core_algos.POLICY_LOSS_REGISTRY, "flexent_ce_gppo")
    with pytest.raises(RuntimeError, match="plugin did not load"):
        check_registered("flexent_ce_gppo")
    with pytest.raises(RuntimeError, match="flexent_ce_gppo"):
        FlexentPolicyLossConfig(loss_mode="flexent_ce_gppo")
    check_registered("vanilla")  # verl's own names are not flexent's business


# --- parity with verl's vanilla loss ---------------------------------------------------------

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
    eps_low = clamp(1 - 0.7/(1 - 0.13 p), 0.05, 0.6) per token (METHOD §3, implicit mode)."""
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


# --- config -------------------------------------------------------------------------------


def test_config_roundtrips_through_hydra_overrides(v):
    cfg = v.compose(
        [
            f"actor_rollout_ref.actor.policy_loss._target_={FLEXENT_TARGET}",
            "actor_rollout_ref.actor.policy_loss.loss_mode=flexent_ppo_clip",
            "+actor_rollout_ref.actor.policy_loss.strategy=id",
            "+actor_rollout_ref.actor.policy_loss.strategy_params.phase_ratio=0.4",
            "+actor_rollout_ref.actor.policy_loss.upper=[-0.3,0.45]",
            "+actor_rollout_ref.actor.policy_loss.threshold_mode=old",
            "+actor_rollout_ref.actor.policy_loss.total_steps=400",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.n=8",
        ]
    )
    actor = v.to_dataclass(cfg.actor_rollout_ref.actor)
    pl = actor.policy_loss
    assert type(pl).__name__ == "FlexentPolicyLossConfig"
    assert (pl.loss_mode, pl.strategy, dict(pl.strategy_params)) == (
        "flexent_ppo_clip",
        "id",
        {"phase_ratio": 0.4},
    )
    assert (list(pl.upper), pl.threshold_mode, pl.total_steps) == ([-0.3, 0.45], "old", 400)
    th = pl.thresholds(eps_std=0.2)
    assert (th.upper, th.lower, th.mode) == ((-0.3, 0.45), (-0.13, 0.3), "old")
    assert pl.build_strategy(total_steps=400).weights(80) == (0.5, 0.0)  # 1 - 80/(0.4*400)
    assert pl.clip_cov_ratio == 0.0002  # verl's own fields are still there


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("strategy", "nope", "policy_loss.strategy: unknown strategy 'nope'"),
        ("strategy_params", {"phase": 0.5}, "unknown parameter"),
        ("upper", [0.25, 0.5], "alpha"),
        ("eps_clamp", [0.6, 0.05], "eps_min <= eps_max"),
        ("threshold_mode", "fancy", "mode must be one of"),
        ("loss_params", {"beta9": 1.0}, "loss_params has unknown key"),
        ("region_scheme", "x", "region_scheme"),
        ("total_steps", -3, "total_steps"),
        ("loss_mode", "flexent_nope", "unknown policy loss|not in verl's policy-loss registry"),
    ],
)
def test_config_bad_values_are_clear(v, field, value, message):
    from omegaconf import OmegaConf

    node = OmegaConf.create({"_target_": FLEXENT_TARGET, field: value})
    with pytest.raises(Exception, match=message) as err:
        v.to_dataclass(node)
    assert "policy_loss" in str(err.value) or field == "loss_mode"


# --- step delivery through verl's real ppo_loss ---------------------------------------------


def ppo_loss_inputs(old, new, adv, mask, extra: dict):
    """verl's padded layout: 2 prompt tokens + T response tokens per row, log-probs flat."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    B, T = old.shape
    P = 2
    attn = torch.ones(B, P + T, dtype=torch.long)
    flat = []
    for b in range(B):  # model output at position i predicts token i + 1: response at P-1..P+T-2
        row = torch.zeros(P + T, dtype=old.dtype)
        row[P - 1 : P + T - 1] = new[b]
        flat.append(row)
    data = TensorDict(
        {
            "prompts": torch.ones(B, P, dtype=torch.long),
            "responses": torch.ones(B, T, dtype=torch.long),
            "attention_mask": attn,
            "response_mask": mask.long(),
            "old_log_probs": old,
            "advantages": adv,
        },
        batch_size=[B],
    )
    info = {"dp_size": 1, "batch_num_tokens": None, "global_batch_size": None}
    info.update(extra)
    tu.assign_non_tensor(data, **info)
    return {"log_probs": torch.cat(flat)}, data


def test_step_reaches_loss_through_ppo_loss(v):
    """The id schedule over T = 10 verl steps: k = step - 1; w_up = 1 - k/5 in phase I, then
    w_low = 1 + lambda = 1 - (k - 5)/5. eps_high = w_up H(p) + (1 - w_up) 0.28 per token."""
    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig, StepController

    cfg = actor_config(v, FlexentPolicyLossConfig(strategy="id", total_steps=10))
    ctrl = StepController(cfg.policy_loss.build_strategy(total_steps=10))
    loss_fn = FlexentActorLoss(cfg)
    old, new, adv, mask = batch(5)
    p = old.exp()
    h = ((1.5 / (1 + 0.25 * p)) - 1).clamp(0.05, 0.6)
    m_ = (1 - 0.7 / (1 - 0.13 * p)).clamp(0.05, 0.6)
    for step, w_up, w_low in [(1, 1.0, 0.0), (3, 0.6, 0.0), (6, 0.0, 0.0), (9, 0.0, 0.4)]:
        got = ctrl.weights(step)
        assert got == pytest.approx((w_up, w_low))
        extra = {"flexent_step": step - 1, "flexent_w_up": got[0], "flexent_w_low": got[1]}
        model_output, data = ppo_loss_inputs(old, new, adv, mask, extra)
        _, metrics = loss_fn(model_output, data)
        eh = float((w_up * h + (1 - w_up) * 0.28)[mask].mean())
        el = float((w_low * m_ + (1 - w_low) * 0.2)[mask].mean())
        assert metrics["actor/clip/eps_high_mean"].aggregate() == pytest.approx(eh, rel=1e-6)
        assert metrics["actor/clip/eps_low_mean"].aggregate() == pytest.approx(el, rel=1e-6)
        assert metrics["actor/control/w_up"].aggregate() == pytest.approx(w_up)
        assert cfg.policy_loss.__dict__["_flexent_runtime"] == {}  # nothing leaks to the next call


def test_step_dependent_strategy_without_trainer_fails(v):
    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig

    cfg = actor_config(v, FlexentPolicyLossConfig(strategy="did", total_steps=10))
    model_output, data = ppo_loss_inputs(*batch(2), {})
    with pytest.raises(RuntimeError, match="trainer_mode=flexent_sync"):
        FlexentActorLoss(cfg)(model_output, data)


def test_trainer_update_actor_ships_weights(v):
    """FlexentPPOTrainer._update_actor on verl's real config, with a fake worker group that runs
    the installed loss the way verl's worker does (extra_info -> non-tensor data)."""
    from flexent.integrations.verl import (
        FlexentActorLoss,
        FlexentPolicyLossConfig,
        FlexentPPOTrainer,
    )
    from flexent.integrations.verl.controller import StepController
    from flexent.strategies import get_strategy

    conf = v.compose(["actor_rollout_ref.rollout.n=2"])
    cfg = actor_config(v, FlexentPolicyLossConfig(strategy="od", total_steps=10))
    old, new, adv, mask = batch(6)

    class FakeWG:
        def update_actor(self, meta):
            model_output, data = ppo_loss_inputs(old, new, adv, mask, dict(meta.extra_info))
            _, metrics = FlexentActorLoss(cfg)(model_output, data)
            out = {k: [m.aggregate()] for k, m in metrics.items()}
            return {"metrics": {**out, "mfu": [0.0]}}

    trainer = object.__new__(FlexentPPOTrainer)
    trainer.trainer_mode = "flexent_sync"
    assert trainer.trainer_mode == "sync"  # verl's mode checks see the sync trainer
    trainer.config, trainer.actor_rollout_wg, trainer.global_steps = conf, FakeWG(), 1
    trainer.flexent = StepController(get_strategy("od", total_steps=10))
    trainer.flexent.observe_entropy(1, 1.0)  # s_0 = 0: suppress, (w_up, w_low) = (0, 1)
    meta = types.SimpleNamespace(extra_info={})
    metrics: dict = {}
    trainer._update_actor(meta, metrics)
    assert meta.extra_info["flexent_step"] == 0
    assert (metrics["actor/control/w_up"], metrics["actor/control/w_low"]) == (0.0, 1.0)
    p = old.exp()
    el = (1 - 0.7 / (1 - 0.13 * p)).clamp(0.05, 0.6)
    assert metrics["actor/clip/eps_low_mean"] == pytest.approx(float(el[mask].mean()), rel=1e-6)
    assert metrics["actor/clip/eps_high_mean"] == pytest.approx(0.28)


def test_inert_clipping_is_detected(v):
    from flexent.integrations.verl.trainer import clipping_is_inert

    on_policy = v.compose(
        ["data.train_batch_size=64", "actor_rollout_ref.actor.ppo_mini_batch_size=64"]
    )
    off_policy = v.compose(
        ["data.train_batch_size=64", "actor_rollout_ref.actor.ppo_mini_batch_size=16"]
    )
    epochs = v.compose(
        [
            "data.train_batch_size=64",
            "actor_rollout_ref.actor.ppo_mini_batch_size=64",
            "actor_rollout_ref.actor.ppo_epochs=2",
        ]
    )
    assert (
        clipping_is_inert(on_policy)
        and not clipping_is_inert(off_policy)
        and not clipping_is_inert(epochs)
    )


# --- checkpoints ---------------------------------------------------------------------------


def run(ctrl, steps, entropies):
    out = []
    for s in steps:
        ctrl.observe_entropy(s, entropies[s])
        out.append(ctrl.weights(s))
    return out


def test_strategy_state_resumes_exactly(tmp_path):
    from flexent.integrations.verl.controller import STATE_FILE, StepController
    from flexent.strategies import get_strategy

    # entropy path that drives od through boost and suppress: H_init = 1.0, tau_low = 0.2
    H = {
        s: h
        for s, h in enumerate([0, 1.0, 0.6, 0.15, 0.3, 0.5, 0.9, 0.7, 0.18, 0.4, 0.95], start=0)
    }
    straight = run(StepController(get_strategy("od", total_steps=10)), range(1, 11), H)
    first = StepController(get_strategy("od", total_steps=10))
    head = run(first, range(1, 6), H)
    path = first.save(str(tmp_path / "global_step_5"))
    assert os.path.basename(path) == STATE_FILE
    resumed = StepController(get_strategy("od", total_steps=10))
    resumed.load(str(tmp_path / "global_step_5"))
    assert head + run(resumed, range(6, 11), H) == straight
    assert {(1.0, 0.0), (0.0, 1.0)} <= set(straight)  # both od states were visited

    wrong = StepController(get_strategy("od", total_steps=20))
    with pytest.raises(ValueError, match="total_steps"):
        wrong.load(str(tmp_path / "global_step_5"))
    with pytest.raises(FileNotFoundError, match="no flexent strategy state"):
        resumed.load(str(tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / STATE_FILE).write_text("{\n oops")
    with pytest.raises(ValueError, match="line 2"):
        resumed.load(str(tmp_path / "bad"))


def test_od_without_entropy_fails():
    from flexent.integrations.verl.controller import StepController
    from flexent.strategies import get_strategy

    with pytest.raises(RuntimeError, match="bypass_mode"):
        StepController(get_strategy("od", total_steps=10)).weights(1)
    assert not math.isnan(StepController(get_strategy("did", total_steps=10)).weights(1)[0])

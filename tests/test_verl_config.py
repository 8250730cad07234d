"""FlexentPolicyLossConfig through verl's real Hydra config: keys, defaults, clear errors."""

from __future__ import annotations

import pytest

pytest.importorskip("verl")

from verl_support import FLEXENT_TARGET


def test_config_roundtrips_through_hydra_overrides(v):
    cfg = v.compose(
        [
            f"actor_rollout_ref.actor.policy_loss._target_={FLEXENT_TARGET}",
            "actor_rollout_ref.actor.policy_loss.loss_mode=flexent_ppo_clip",
            "+actor_rollout_ref.actor.policy_loss.strategy=id",
            "+actor_rollout_ref.actor.policy_loss.strategy_params.phase_ratio=0.4",
            "+actor_rollout_ref.actor.policy_loss.thresholds.upper=[-0.3,0.45]",
            "+actor_rollout_ref.actor.policy_loss.thresholds.mode=old",
            "+actor_rollout_ref.actor.policy_loss.strategy_params.total_steps=400",
            "+actor_rollout_ref.actor.policy_loss.region_schemes=[empirical]",
            "+actor_rollout_ref.actor.policy_loss.on_inert=warn",
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
        {"phase_ratio": 0.4, "total_steps": 400},
    )
    assert (list(pl.region_schemes), pl.on_inert) == (["empirical"], "warn")
    th = pl.thresholds_for((0.2, 0.2))
    assert (th.upper, th.lower, th.mode) == ((-0.3, 0.45), (-0.13, 0.3), "old")
    # strategy_params.total_steps wins over the trainer's count
    assert pl.build_strategy(total_steps=50).weights(80) == (0.5, 0.0)  # 1 - 80/(0.4*400)
    assert pl.clip_cov_ratio == 0.0002  # verl's own fields are still there


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("strategy", "nope", "policy_loss.strategy: unknown strategy 'nope'"),
        ("strategy_params", {"phase": 0.5}, "policy_loss.strategy_params: .*unknown parameter"),
        ("strategy_params", {"total_steps": -3}, "policy_loss.strategy_params: total_steps"),
        ("thresholds", {"upper": [0.25, 0.5]}, "policy_loss.thresholds: upper.*alpha"),
        ("thresholds", {"eps_clamp": [0.6, 0.05]}, "eps_min <= eps_max"),
        ("thresholds", {"mode": "fancy"}, "mode must be one of"),
        ("thresholds", {"moed": "old"}, "unknown thresholds keys"),
        ("loss_params", {"beta9": 1.0}, "policy_loss.loss_params: .*unknown parameters"),
        ("loss_params", {"generator": 1}, "policy_loss.loss_params: .*unknown parameters"),
        ("region_schemes", ["x"], "policy_loss.region_schemes: unknown scheme"),
        ("on_inert", "maybe", "policy_loss.on_inert: must be one of"),
        ("loss_mode", "flexent_nope", "unknown policy loss|not in verl's policy-loss registry"),
    ],
)
def test_config_bad_values_are_clear(v, field, value, message):
    from omegaconf import OmegaConf

    node = OmegaConf.create({"_target_": FLEXENT_TARGET, field: value})
    with pytest.raises(Exception, match=message) as err:
        v.to_dataclass(node)
    assert "policy_loss" in str(err.value) or field == "loss_mode"

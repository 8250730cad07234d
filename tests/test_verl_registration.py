"""flexent's verl plugin is found and registered by verl 0.9.1's own plugin loading."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import pytest

pytest.importorskip("verl")

NAMES = [
    "flexent_archer",
    "flexent_aspo",
    "flexent_bapo",
    "flexent_ce_gppo",
    "flexent_cispo",
    "flexent_clip_b",
    "flexent_clip_cov",
    "flexent_dppo_kl",
    "flexent_dppo_tv",
    "flexent_dro",
    "flexent_erc",
    "flexent_gmpo",
    "flexent_gspo",
    "flexent_kl_cov",
    "flexent_luspo",
    "flexent_ppo_clip",
    "flexent_sapo",
    "flexent_vespo",
]


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


def _dro_actor(v, policy_loss):
    """verl's ActorConfig at its defaults around ``policy_loss``."""
    return v.ActorConfig(
        strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=policy_loss
    )


def test_flexent_dro_reads_verls_dro_beta(v):
    """flexent_dro takes dro_beta from verl's own key policy_loss.dro_beta when loss_params lacks
    it; the two disagreeing is an error naming both; neither leaves the loss its default (0.05).
    The value is checked against verl's own dro with the same policy_loss.dro_beta: for the
    penalty 0.3 / 2 (log r)^2 the two must agree, which no other beta gives."""
    import torch

    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.integrations.verl.config import verl_loss_params

    def flexent(**kw):
        return _dro_actor(v, FlexentPolicyLossConfig(loss_mode="flexent_dro", **kw))

    assert verl_loss_params("dro", flexent(dro_beta=0.3)) == {"dro_beta": 0.3}
    assert verl_loss_params("dro", flexent(loss_params={"dro_beta": 0.3})) == {"dro_beta": 0.3}
    assert verl_loss_params("dro", flexent(dro_beta=0.3, loss_params={"dro_beta": 0.3})) == {
        "dro_beta": 0.3
    }
    assert verl_loss_params("dro", flexent()) == {}  # verl's default is null: the loss's own
    with pytest.raises(ValueError, match=r"policy_loss\.dro_beta=0\.1 and .*dro_beta=0\.3"):
        verl_loss_params("dro", flexent(dro_beta=0.1, loss_params={"dro_beta": 0.3}))
    # through the registered loss: verl's own dro is the reference
    g = torch.Generator().manual_seed(3)
    old = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 2
    new = (old + 0.5 * torch.randn(3, 5, generator=g, dtype=torch.float64)).clamp(max=0.0)
    adv = torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    ref = _dro_actor(v, v.PolicyLossConfig(loss_mode="dro", dro_beta=0.3))
    want, _ = v.core_algos.get_policy_loss_fn("dro")(old, new, adv, mask, "token-mean", ref)
    got, metrics = v.core_algos.get_policy_loss_fn("flexent_dro")(
        old, new, adv, mask, "token-mean", flexent(dro_beta=0.3)
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    default, _ = v.core_algos.get_policy_loss_fn("flexent_dro")(
        old, new, adv, mask, "token-mean", flexent()
    )
    assert not torch.isclose(default, want)  # 0.05 is not 0.3: the key did reach the loss
    assert metrics["actor/dro/penalty_mean"] > 0


def test_a_trl_only_loss_is_named_as_such():
    """clip_v needs pi_old's logits (its second term), which verl's loss never sees: it is not
    registered, and asking verl for it says TRL only, not that the plugin failed to load."""
    from flexent.integrations.verl.config import check_registered, flexent_loss_name

    for check in (check_registered, flexent_loss_name):
        with pytest.raises(ValueError, match=r"clip_v needs pi_old's logits.*TRL only"):
            check("flexent_clip_v")
    with pytest.raises(ValueError, match="is not a flexent loss"):
        flexent_loss_name("flexent_nope")

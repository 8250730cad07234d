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
    "flexent_clip_cov",
    "flexent_dppo_kl",
    "flexent_dppo_tv",
    "flexent_gspo",
    "flexent_kl_cov",
    "flexent_ppo_clip",
    "flexent_sapo",
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

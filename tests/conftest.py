"""Shared fixtures. ``v``: verl's modules (imported once per session, verl takes many seconds to
import) and a composer for verl's real Hydra ``ppo_trainer`` config; skipped without verl.
``tiny`` / ``tiny_model_dir``: the 1-layer char-level Qwen2 of :func:`tiny_support.tiny_model`
(default alphabet), in memory and saved."""

from __future__ import annotations

import os
import types

import pytest

from tiny_support import save_tiny_model, tiny_model


@pytest.fixture(scope="module")
def tiny():
    """``(model, tokenizer)`` of the tiny Qwen2, once per test module (tests only read it)."""
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny Qwen2 and its tokenizer saved once per session (tests only read it)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), alphabet=None)


@pytest.fixture(scope="session")
def v():
    """verl's modules, imported once, plus a composer for verl's real ppo_trainer config."""
    verl = pytest.importorskip("verl")
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

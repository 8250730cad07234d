"""The plugin's co-install fix (flexent.integrations.verl.compat): verl 0.9.1's model build
imports trl's AutoModelForCausalLMWithValueHead whenever trl is installed; trl 1.x lacks it.

Branches: trl installed without the class -> verl's probe rebound (and, in this [dev]
environment, verl's real apply_monkey_patch runs); trl with the class (at either place verl
looks) or no trl -> verl untouched. The stand-in trl modules go into sys.modules only for the
test (monkeypatch), and the probe is rebound on a stand-in of verl's module, not verl's own.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

pytest.importorskip("verl")

from flexent.integrations.verl import compat


def fake_trl(monkeypatch, *, top_level: bool, experimental: bool) -> None:
    """A ``trl`` package with the class at the top level (trl <= 0.2x) and/or in
    ``trl.experimental.ppo`` (later 0.x), or at neither (trl 1.x)."""
    trl = types.ModuleType("trl")
    trl.__spec__ = importlib.machinery.ModuleSpec("trl", None, is_package=True)
    ppo = types.ModuleType("trl.experimental.ppo")
    value_head = type(compat.VALUE_HEAD, (), {})
    if top_level:
        setattr(trl, compat.VALUE_HEAD, value_head)
    if experimental:
        setattr(ppo, compat.VALUE_HEAD, value_head)
    monkeypatch.setitem(sys.modules, "trl", trl)
    monkeypatch.setitem(sys.modules, "trl.experimental", types.ModuleType("trl.experimental"))
    monkeypatch.setitem(sys.modules, "trl.experimental.ppo", ppo)


def verl_module():
    """A stand-in of verl's monkey_patch module: only the name the fix rebinds."""

    def is_trl_available():
        return True

    return types.SimpleNamespace(is_trl_available=is_trl_available)


def test_trl_without_the_class_is_patched(monkeypatch):
    fake_trl(monkeypatch, top_level=False, experimental=False)
    module = verl_module()
    assert compat.trl_installed() and not compat.trl_has_value_head()
    assert compat.patch_trl_probe(module) is True
    assert module.is_trl_available is compat.trl_has_value_head
    assert module.is_trl_available() is False


@pytest.mark.parametrize(
    ("top_level", "experimental"), [(True, False), (False, True), (True, True)]
)
def test_trl_with_the_class_is_left_alone(monkeypatch, top_level, experimental):
    fake_trl(monkeypatch, top_level=top_level, experimental=experimental)
    module = verl_module()
    probe = module.is_trl_available
    assert compat.trl_has_value_head()
    assert compat.patch_trl_probe(module) is False
    assert module.is_trl_available is probe


def test_no_trl_is_left_alone(monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # import trl -> ImportError, find_spec -> None
    module = verl_module()
    probe = module.is_trl_available
    assert not compat.trl_installed() and not compat.trl_has_value_head()
    assert compat.patch_trl_probe(module) is False
    assert module.is_trl_available is probe


def test_dev_environment_conflict_is_fixed(monkeypatch):
    """With the installed trl and verl (flexent's [dev] extra: trl 1.16, verl 0.9.1): importing
    the plugin rebound verl's probe, and verl's real model patching, which its FSDP engine
    calls when it builds the actor, runs; with verl's own probe it raises ImportError."""
    pytest.importorskip("trl")
    if compat.trl_has_value_head():
        pytest.skip("the installed trl has the class verl imports: no conflict to fix")
    import verl.models.transformers.monkey_patch as verl_patch
    from verl.utils import import_utils

    import flexent.integrations.verl as plugin
    from flexent.models import build_char_tokenizer, build_tiny_qwen2

    assert plugin.TRL_PROBE_PATCHED is True
    assert verl_patch.is_trl_available is compat.trl_has_value_head
    assert import_utils.is_trl_available() is True  # verl's probe itself is untouched
    model = build_tiny_qwen2(build_char_tokenizer("ab"), hidden_size=8, num_layers=1, num_heads=2)
    verl_patch.apply_monkey_patch(model, use_remove_padding=False)
    monkeypatch.setattr(verl_patch, "is_trl_available", import_utils.is_trl_available)
    with pytest.raises(ImportError, match=compat.VALUE_HEAD):
        verl_patch.apply_monkey_patch(model, use_remove_padding=False)

"""flexent.config (+ TRL's trainer check): shipped configs load, bad configs fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from flexent import config as neutral
from flexent.config import ConfigError, save_config
from flexent.integrations.trl.config import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
FILL = ["model.path=/m", "data.source=/d.jsonl", "evaluation.source=/t.jsonl"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path, tmp_path):
    cfg = load_config(path, FILL)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg  # the saved config reads back equal


def test_shipped_configs_cover_the_paper_runs():
    names = {p.stem for p in CONFIGS}
    for v in ("id", "did", "od", "grpo", "clip_higher", "clip_cov", "kl_cov", "ce_gppo"):
        assert f"qwen25_math7b_dapo_{v}" in names


def _cfg(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text("model: {path: /m}\ndata: {source: x}\nreward: {name: math}\n" + text)
    return path


@pytest.mark.parametrize(
    ("text", "overrides", "match"),
    [
        ("evaluation: {enabld: true}\n", [], "evaluation.enabld"),
        ("reward: {name: math}\n", [], "invalid YAML"),
        ("", ["trainer.lerning_rate=0.1"], "trainer.lerning_rate"),
        ("", ["trainer.num_generations=many"], "trainer.num_generations"),
        ("", ["trainer.output_dir=x"], "trainer.output_dir"),
        ("", ["evaluation.num_samples=x"], "evaluation.num_samples"),
        ("", ["model.dtype=int8"], "model.dtype"),
        ("", ["entropy_control.on_inert=maybe"], "entropy_control.on_inert"),
        ("", ["entropy_control.thresholds.eps_std=1.5"], "eps_std"),
        ("", ["entropy_control.thresholds.upper=[0.1,0.5]"], "alpha"),
        ("", ["oops"], "key.sub=value"),
        ("", ["entropy_control.strategy=idd"], r"strategy.*'idd'.*valid names"),
        (
            "",
            ["entropy_control.strategy=od", "entropy_control.strategy_params.phase_ratio=0.3"],
            r"strategy_params.*\['phase_ratio'\]",
        ),
        ("", ["entropy_control.loss=ppo"], r"entropy_control\.loss.*ppo"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_cfg(tmp_path, text), overrides)


def test_the_trainer_section_is_checked_by_the_engine(tmp_path):
    """flexent.config imports no engine: its loader takes the engine's check of `trainer`."""
    path, bad = _cfg(tmp_path, ""), ["trainer.lerning_rate=0.1"]
    assert neutral.load_config(path, bad).trainer == {"lerning_rate": 0.1}
    with pytest.raises(ConfigError, match=r"trainer\.lerning_rate \(override .*\) is not a TRL"):
        load_config(path, bad)


def test_missing_required_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"reward\.name"):
        load_config(None, ["model.path=/m", "data.source=x"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_sections_have_the_core_keys_and_defaults():
    """entropy_control and its thresholds are the schema of EntropyControl / DynamicThresholds:
    the same keys, and defaults equal to the core's (pairs as lists)."""
    import dataclasses

    from flexent.config import EntropyControlConfig, ThresholdsConfig
    from flexent.control import EntropyControl
    from flexent.thresholds import DynamicThresholds

    for section, core in ((EntropyControlConfig, EntropyControl),
                          (ThresholdsConfig, DynamicThresholds)):  # fmt: skip
        assert [f.name for f in dataclasses.fields(section)] == [
            f.name for f in dataclasses.fields(core)
        ]
    assert dataclasses.asdict(ThresholdsConfig()) == DynamicThresholds().to_dict()
    ec, core = EntropyControlConfig(), EntropyControl()
    assert ec.region_schemes == list(core.region_schemes)
    assert (ec.strategy, ec.loss, ec.on_inert, ec.entropy_coef) == (
        core.strategy,
        core.loss,
        core.on_inert,
        core.entropy_coef,
    )

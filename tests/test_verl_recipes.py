"""The verl recipes' Hydra overrides are real keys of verl 0.9.1's config and build a valid actor.

Each script runs with FLEXENT_DRY_RUN=1 (prints its overrides); verl's ppo_trainer config is then
composed with them and the actor section instantiated, as verl's workers do.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

verl = pytest.importorskip("verl")
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "verl"
METHODS = ["grpo", "clip_higher", "clip_cov", "kl_cov", "ce_gppo", "id", "did", "od", "cispo",
           "dppo_tv", "dppo_kl", "aspo", "archer", "bapo", "high_entropy_minority", "id_tv",
           "id_dcpo", "adaptive_entropy", "vespo", "luspo", "gmpo", "dro", "clip_b", "erc",
           "qae", "entropic", "aepo", "repo_r"]  # fmt: skip


def overrides(script: str, *args: str) -> list[str]:
    env = {
        **os.environ,
        "FLEXENT_DRY_RUN": "1",
        "MODEL_PATH": "m",
        "TRAIN_FILE": "t",
        "VAL_FILE": "v",
    }
    out = subprocess.run(
        ["bash", str(RECIPES / script), *args], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from verl.utils.config import omega_conf_to_dataclass

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")

    def build(args: list[str]):
        with initialize_config_dir(config_dir=cfg_dir, version_base=None):
            cfg = hydra_compose(config_name="ppo_trainer", overrides=args)
        return cfg, omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)

    return build


# method -> (the loss parameters the plugin hands the loss, verl actor keys the recipe sets): the
# values of each rule's source (docs/losses.md, "Every rule in one table"), written out here.
RECIPE_SETTINGS = {
    "vespo": ({"k_pos": 2.0, "lambda_pos": 3.0, "k_neg": 3.0, "lambda_neg": 2.0},
              {"loss_agg_mode": "token-mean"}),
    "luspo": ({}, {"clip_ratio_low": 0.002, "clip_ratio_high": 0.0025,
                   "loss_agg_mode": "seq-mean-token-sum"}),
    "gmpo": ({}, {"clip_ratio_low": 0.4, "clip_ratio_high": 0.4,
                  "loss_agg_mode": "seq-mean-token-mean"}),
    "dro": ({"dro_beta": 0.05}, {"loss_agg_mode": "token-mean"}),  # verl's policy_loss.dro_beta
    "clip_b": ({"mu": 2.5, "clip_c": 3.0}, {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2}),
    "erc": ({"entropy_eps_low": 0.05, "entropy_eps_high": 0.05, "clip_c": 10.0},
            {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "calculate_entropy": True}),
    # ppo_clip reads verl's clip_ratio_c (3.0): verl's own GRPO always dual-clips
    "qae": ({"clip_c": 3.0}, {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "loss_agg_mode": "token-mean"}),
}  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_paper_recipe_composes(compose, method):
    cfg, actor = compose(overrides("paper.sh", "math7b", method))
    assert cfg.trainer.v1.trainer_mode == "flexent_sync"
    assert (cfg.data.train_batch_size, cfg.actor_rollout_ref.rollout.n) == (512, 8)
    assert (cfg.trainer.total_training_steps, cfg.trainer.n_gpus_per_node) == (400, 8)
    # Qwen2.5-Math-7B's 4096 positions: prompt 1024 + response 3072 (tests/test_configs_context.py)
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (1024, 3072)
    assert cfg.actor_rollout_ref.rollout.max_model_len == 4096
    assert type(actor.policy_loss).__name__ == "FlexentPolicyLossConfig"
    expected_strategy = (
        method.split("_")[0] if method in ("id", "did", "od", "id_tv", "id_dcpo") else "static"
    )
    expected_strategy = {"entropic": "target", "aepo": "aepo", "repo_r": "repo_r"}.get(
        method, expected_strategy
    )
    assert actor.policy_loss.strategy == expected_strategy
    # the loss-weight controllers shape the advantages (flexent_sync ships it every step)
    shaping = actor.policy_loss.build_strategy(total_steps=400).shaping()
    controllers = {"entropic": {"target": 1.0, "actuator": "entropic", "kp": 1.0, "ki": 0.01},
                   "aepo": {"target": 1.0}, "repo_r": {"target": 1.0}}  # fmt: skip
    assert (shaping[0] if shaping else None) == (method if method in controllers else None)
    if method in controllers:
        assert dict(actor.policy_loss.strategy_params) == controllers[method]
    families = {"id_tv": "tv", "id_dcpo": "dcpo"}
    if method in families:  # the threshold family reaches the config as a mapping
        assert (
            actor.policy_loss.thresholds_for((0.2, 0.2)).family(upper=True).name == families[method]
        )
    if method == "adaptive_entropy":  # the flexent bonus
        assert actor.policy_loss.adaptive_entropy["target"] == 0.2 and actor.policy_loss.uses_bonus
    # what flexent_sync checks at start: the current entropy wherever a setting reads it
    # (archer, high_entropy_minority, adaptive_entropy set calculate_entropy) and no double bonus
    from flexent.integrations.verl.config import (
        check_entropy,
        config_warnings,
        current_entropy_users,
        verl_loss_params,
    )

    check_entropy(actor)
    needs = method in ("archer", "high_entropy_minority", "adaptive_entropy", "erc")
    assert bool(current_entropy_users(actor)) == needs, method
    # the aggregation and clip widths suit the loss's traits (no warning at the first call)
    assert config_warnings(actor) == [], method
    name = actor.policy_loss.loss_mode.removeprefix("flexent_")
    if method in RECIPE_SETTINGS:  # the paper values reach the loss and verl's actor
        params, actor_keys = RECIPE_SETTINGS[method]
        assert verl_loss_params(name, actor) == params, method
        assert {k: getattr(actor, k) for k in actor_keys} == actor_keys, method
    # QAE swaps verl's advantage estimator; every other method keeps verl's GRPO
    qae = method == "qae"
    assert cfg.algorithm.adv_estimator == ("flexent_qae" if qae else "grpo")
    assert cfg.algorithm.get("quantile_k") == (0.4 if qae else None)
    # clipping must act: 512 / 32 = 16 optimizer steps per rollout batch
    assert cfg.data.train_batch_size // cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 16


def test_paper_recipe_7b_and_unknowns(compose):
    cfg, _ = compose(overrides("paper.sh", "7b", "ce_gppo"))
    assert (cfg.data.max_response_length, cfg.actor_rollout_ref.model.path) == (8192, "m")
    assert cfg.actor_rollout_ref.rollout.max_model_len == 2048 + 8192
    for args in (("7b", "nope"), ("13b", "id")):
        with pytest.raises(subprocess.CalledProcessError):
            overrides("paper.sh", *args)


def test_smoke_recipe_composes(compose):
    cfg, actor = compose(overrides("smoke_1gpu.sh", "id"))
    assert (cfg.trainer.n_gpus_per_node, actor.policy_loss.strategy) == (1, "id")
    assert cfg.data.train_batch_size > actor.ppo_mini_batch_size  # several updates per rollout


def test_gsm8k_converter(tmp_path):
    from importlib import util

    import pandas as pd

    spec = util.spec_from_file_location("g2p", RECIPES / "gsm8k_to_parquet.py")
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = tmp_path / "in.jsonl"
    src.write_text('{"question": "1+1?", "answer": "so 2\\n#### 1,002"}\n\n')
    assert mod.convert(str(src), str(tmp_path / "o.parquet")) == 1
    row = pd.read_parquet(tmp_path / "o.parquet").iloc[0]
    assert (row["data_source"], row["reward_model"]["ground_truth"]) == ("openai/gsm8k", "1002")
    # verl's examples/data_preprocess/gsm8k.py layout, which flexent train reads as it is
    assert row["prompt"][0]["role"] == "user" and row["ability"] == "math"
    assert dict(row["extra_info"]) == {
        "split": "test", "index": 0, "answer": "so 2\n#### 1,002", "question": "1+1?"
    }  # fmt: skip
    from flexent.data import load_prompts

    (loaded,) = load_prompts(tmp_path / "o.parquet")
    assert loaded["answer"] == "1002" and loaded["prompt"].startswith("1+1? Let's think")
    assert mod.convert(str(src), str(tmp_path / "o.parquet"), "train") == 1
    assert pd.read_parquet(tmp_path / "o.parquet").iloc[0]["extra_info"]["split"] == "train"
    src.write_text('{"question": "q", "answer": "no final"}\n')
    with pytest.raises(ValueError, match=r"in\.jsonl:1"):
        mod.convert(str(src), str(tmp_path / "o.parquet"))

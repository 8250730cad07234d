"""Every shipped config and verl recipe fits its model: prompt + response <= the model's context.

vLLM's context (``max_model_len``) defaults to the model's ``max_position_embeddings`` in verl
0.9.1 (``vllm_async_server.py``, ``_validate_configs``) and in TRL 1.16's colocated vLLM; a
response stops, without an error, where prompt + response reach it. So a recipe asking for more
than the model has is cut short silently. The model values are recorded below with their source
(nothing is downloaded); a config or recipe model missing from the table fails the test.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
RECIPES = ROOT / "recipes" / "verl"


@dataclass(frozen=True)
class Model:
    max_position_embeddings: int  # config.json; vLLM's max_model_len by default
    source: str
    trained: int | None = None  # the context the model was trained at, when smaller

    @property
    def limit(self) -> int:
        return self.trained or self.max_position_embeddings


MODELS = {
    "Qwen/Qwen2.5-Math-7B": Model(
        4096,
        "config.json: max_position_embeddings 4096, rope_theta 10000 (the hub copy "
        "unsloth/Qwen2.5-Math-7B and fine-tunes naming Qwen/Qwen2.5-Math-7B as _name_or_path); "
        "verl's recipe/dapo/test_dapo_7b_math.sh overrides it to 32768 to fit 2048 + 8192",
    ),
    "Qwen/Qwen2.5-7B": Model(
        131072,
        "config.json: max_position_embeddings 131072, rope_theta 1e6 (fine-tunes naming "
        "Qwen2.5-7B); pre-trained at 32768 tokens, longer with YaRN (Qwen2.5 report, model card)",
        trained=32768,
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": Model(
        8192,
        "config.json: max_position_embeddings 8192, rope_theta 100000 (fine-tunes naming "
        "HuggingFaceTB/SmolLM2-135M-Instruct); configs/smollm2_arithmetic_cpu.yaml's GGUF",
    ),
    "flexent demo model": Model(
        64,
        "src/flexent/demo/setup.py bootstrap_model: build_tiny_qwen2(max_position_embeddings=64)",
    ),
}

# Configs whose model.path is `???` (filled in at run time): the model they are written for.
FILLED_MODEL = {
    "demo.yaml": "flexent demo model",
    "smollm2_arithmetic_cpu.yaml": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


def recipe(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "MAX_PROMPT_LENGTH",
                                                              "MAX_RESPONSE_LENGTH")}  # fmt: skip
    return subprocess.run(
        ["bash", str(RECIPES / script), *args],
        env={**base, "FLEXENT_DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
    )


def recipe_overrides(script: str, *args: str, **env: str) -> dict[str, str]:
    out = recipe(script, *args, **env)
    assert out.returncode == 0, out.stderr
    return dict(line.lstrip("+").split("=", 1) for line in out.stdout.splitlines())


def paper_models() -> dict[str, str]:
    """MODEL argument -> hub id, as paper.sh's `case` lists them."""
    text = (RECIPES / "paper.sh").read_text()
    return dict(re.findall(r"^\s+(\w+)\)\s+hf=(\S+);", text, flags=re.MULTILINE))


def test_model_table_matches_the_code():
    demo = (ROOT / "src" / "flexent" / "demo" / "setup.py").read_text()
    assert "max_position_embeddings=64" in demo
    common = (RECIPES / "common.sh").read_text()  # the recipe's own up-front check
    for hub_id in paper_models().values():
        ctx = MODELS[hub_id].max_position_embeddings
        assert re.search(rf"{re.escape(hub_id)}\)\s+ctx={ctx} ;;", common), hub_id


@pytest.mark.parametrize("model", sorted(paper_models()))
def test_paper_recipe_fits_the_model(model):
    hub_id = paper_models()[model]
    spec = MODELS[hub_id]
    o = recipe_overrides("paper.sh", model, "grpo")
    assert o["actor_rollout_ref.model.path"] == hub_id
    prompt, response = int(o["data.max_prompt_length"]), int(o["data.max_response_length"])
    assert prompt + response <= spec.limit, f"{model}: {prompt} + {response} > {spec.limit}"
    # vLLM's context is exactly prompt + response (verl refuses more than the model has) and
    # longer prompts are dropped, so a response always has its full length available
    assert int(o["actor_rollout_ref.rollout.max_model_len"]) == prompt + response
    assert o["data.filter_overlong_prompts"] == "true"
    # the token budgets per GPU hold at least one whole sequence
    assert int(o["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"]) >= prompt + response


def test_paper_recipe_lengths():
    """The chosen lengths (docs/verl.md): Math-7B 1024 + 3072, as SimpleRL-Zoo; 7B 2048 + the
    paper's 8192."""
    lengths = {}
    for model in ("math7b", "7b"):
        o = recipe_overrides("paper.sh", model, "od")
        lengths[model] = (int(o["data.max_prompt_length"]), int(o["data.max_response_length"]))
    assert lengths == {"math7b": (1024, 3072), "7b": (2048, 8192)}


def test_paper_recipe_refuses_lengths_over_the_context(tmp_path):
    out = recipe("paper.sh", "math7b", "id", MAX_RESPONSE_LENGTH="4096")
    assert out.returncode == 2
    assert "prompt + response = 5120 tokens > max_position_embeddings 4096" in out.stderr
    # a local model directory: its config.json decides
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 32768}')
    o = recipe_overrides("paper.sh", "math7b", "id", MODEL_PATH=str(tmp_path),
                         MAX_RESPONSE_LENGTH="4096")  # fmt: skip
    assert o["actor_rollout_ref.rollout.max_model_len"] == "5120"
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 1024}')
    assert recipe("paper.sh", "math7b", "id", MODEL_PATH=str(tmp_path)).returncode == 2


def test_smoke_recipe_fits_its_documented_model():
    o = recipe_overrides("smoke_1gpu.sh", "id", MODEL_PATH="m", TRAIN_FILE="t", VAL_FILE="v")
    total = int(o["data.max_prompt_length"]) + int(o["data.max_response_length"])
    assert total <= MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"].limit


def _prompt_budget(name: str, cfg) -> tuple[int, str]:
    """An upper bound on the prompt tokens of config ``name``, and why it holds."""
    if name.startswith("qwen25_math7b_dapo_"):
        o = recipe_overrides("paper.sh", "math7b", "id")
        return int(o["data.max_prompt_length"]), (
            "DAPO-Math-17k prompts as recipes/verl/paper.sh math7b keeps them (longer ones are "
            "dropped there; TRL 1.16 has no prompt limit, flexent train warns at start)"
        )
    if name == "demo.yaml":
        from flexent.demo import Bootstrap, prompt_of

        b = Bootstrap()
        longest = prompt_of((b.max_number,) * b.n_numbers, b.max_target)
        return len(longest), "character tokenizer, no BOS: one token a character"
    if name == "smollm2_arithmetic_cpu.yaml":
        from flexent.integrations.trl.preflight import load_rows

        rows = load_rows(cfg, evaluation=False) + load_rows(cfg, evaluation=True)
        longest = max(sum(len(m["content"].encode()) for m in r["prompt"]) for r in rows)
        # byte-level BPE: at most one token per byte; the chat template adds its default system
        # message and the turn markers (about 30 tokens), 64 allowed
        return longest + 64, "byte-level BPE, at most a token a byte, + 64 for the chat template"
    raise AssertionError(f"configs/{name}: no prompt budget recorded in this test")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_fits_its_model(path):
    pytest.importorskip("trl")
    from trl import GRPOConfig

    from flexent.config import load_config

    raw = yaml.safe_load(path.read_text())
    fill = {"model.path": "/m", "data.source": "/d.jsonl", "evaluation.source": "/t.jsonl"}
    overrides = [
        f"{key}={value}"
        for key, value in fill.items()
        if raw.get(key.split(".")[0], {}).get(key.split(".")[1]) == "???"
    ]
    cfg = load_config(path, overrides)
    model = FILLED_MODEL.get(path.name, cfg.model.path)
    assert model in MODELS, f"configs/{path.name}: model {model!r} not in this test's table"
    spec = MODELS[model]
    prompt, why = _prompt_budget(path.name, cfg)
    default = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}["max_completion_length"]
    response = max(
        cfg.trainer.get("max_completion_length") or default, cfg.evaluation.max_new_tokens or 0
    )
    assert prompt + response <= spec.limit, (
        f"configs/{path.name}: prompt {prompt} ({why}) + response {response} > {spec.limit} "
        f"({model}: {spec.source})"
    )


def test_trl_and_verl_recipes_agree_for_math7b():
    o = recipe_overrides("paper.sh", "math7b", "id")
    for path in (ROOT / "configs").glob("qwen25_math7b_dapo_*.yaml"):
        trainer = yaml.safe_load(path.read_text())["trainer"]
        assert trainer["max_completion_length"] == int(o["data.max_response_length"]), path.name


def test_dapo_configs_read_the_verl_parquet(tmp_path):
    """The TRL configs point at DAPO-Math-17k's fields: rows load through flexent train's
    preflight with chat prompts and carry the column the reward reads."""
    pytest.importorskip("trl")
    pytest.importorskip("pyarrow")
    from flexent.config import load_config
    from flexent.integrations.trl.preflight import build_reward, check_columns, load_rows
    from test_data import dapo_parquet

    parquet = dapo_parquet(tmp_path)
    for path in sorted((ROOT / "configs").glob("qwen25_math7b_dapo_*.yaml")):
        cfg = load_config(path, [f"data.source={parquet}", "data.split=null"])
        rows = load_rows(cfg, evaluation=False)
        reward = build_reward(cfg)
        check_columns(reward, rows, "data.source", str(parquet))
        assert [r["answer"] for r in rows] == ["64", "34", "-8"], path.name
        assert rows[0]["prompt"][0]["role"] == "user", path.name
        assert reward.score("...\nAnswer: 34", rows[1]).score == 1.0, path.name

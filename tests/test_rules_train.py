"""Every peer rule runs a few steps through ``flexent train`` (TRL, a tiny offline model) and logs
its own metric: the configs/qwen25_math7b_dapo_<rule>.yaml settings at toy scale."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest.importorskip("trl")

from flexent.cli import main
from tiny_support import save_tiny_model, write_countdown_rows

RULES = [
    # (name, overrides, a metric key the rule logs)
    ("clip_cov", ["entropy_control.loss=clip_cov", "entropy_control.loss_params.clip_cov_ratio=0.5",
                  "entropy_control.loss_params.clip_cov_lb=-100",
                  "entropy_control.loss_params.clip_cov_ub=100"], "clip_cov/frac_detached"),
    ("cispo", ["entropy_control.loss=cispo"], "cispo/frac_weight_clipped"),
    ("dppo_tv", ["entropy_control.loss=dppo_tv", "entropy_control.thresholds.eps_std=0.15"],
     "dppo/frac_truncated"),
    ("dppo_kl", ["entropy_control.loss=dppo_kl", "entropy_control.thresholds.eps_std=0.05"],
     "dppo/frac_truncated"),
    ("aspo", ["entropy_control.loss=aspo"], "aspo/frac_dual_pos"),
    ("archer", ["entropy_control.loss=archer"], "archer/frac_high_entropy"),
    ("bapo", ["entropy_control.loss=bapo"], "bapo/pos_share"),
    ("adaptive", ["entropy_control.adaptive_entropy={target: 5.0, delta: 0.01}"],
     "control/adaptive_entropy_coef"),
    ("top_entropy", ["trainer.top_entropy_quantile=0.2"], "clip/frac_high"),
    ("id_tv", ["entropy_control.strategy=id",
               "entropy_control.thresholds.upper={family: tv, delta: 0.15, clamp: false}",
               "entropy_control.thresholds.lower={family: tv, delta: 0.15, clamp: false}"],
     "clip/eps_high_mean"),
    ("id_dcpo", ["entropy_control.strategy=id", "entropy_control.thresholds.upper={family: dcpo}",
                 "entropy_control.thresholds.lower={family: dcpo}"], "clip/eps_low_mean"),
    ("vespo", ["entropy_control.loss=vespo"], "vespo/phi_mean"),
    ("luspo", ["entropy_control.loss=luspo", "trainer.loss_type=luspo",
               "entropy_control.thresholds.eps_std=[0.002, 0.0025]"], "gspo/seq_ratio_mean"),
    ("gmpo", ["entropy_control.loss=gmpo", "trainer.loss_type=grpo",
              "entropy_control.thresholds.eps_std=0.4"], "gmpo/seq_ratio_mean"),
    ("dro", ["entropy_control.loss=dro", "entropy_control.loss_params.dro_beta=0.05"],
     "dro/penalty_mean"),
    ("clip_b", ["entropy_control.loss=clip_b"], "clip_b/frac_dropped"),
    ("clip_v", ["entropy_control.loss=clip_v"], "clip_v/frac_dropped"),
    ("erc", ["entropy_control.loss=erc", "entropy_control.thresholds.eps_std=[0.2, 0.28]"],
     "erc/frac_in_band"),
    ("qae", ["entropy_control.advantage={name: qae, params: {k: 0.4}}"], "advantage/frac_zero"),
    ("entropic", ["entropy_control.strategy=target",
                  "entropy_control.strategy_params={target: 1.0, actuator: entropic}"],
     "control/alpha"),
    ("aepo", ["entropy_control.strategy=aepo", "entropy_control.strategy_params={target: 1.0}"],
     "control/gate"),
    ("repo_r", ["entropy_control.strategy=repo_r",
                "entropy_control.strategy_params={target: 1.0}"], "control/zeta"),
]  # fmt: skip


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("rules")
    save_tiny_model(root / "model")
    write_countdown_rows(root / "data.jsonl")
    path = root / "cfg.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            model: {{path: {root / "model"}}}
            data: {{source: {root / "data.jsonl"}, split: null}}
            reward: {{name: countdown, params: {{last_line_fallback: true}}}}
            trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4,
                       steps_per_generation: 2, max_completion_length: 4, save_steps: 10,
                       use_cpu: true, report_to: [], temperature: 1.0}}
            evaluation: {{enabled: false}}
            output: {{save_final_model: false}}
            """
        )
    )
    return root, path


@pytest.mark.parametrize(("overrides", "key"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_runs_two_steps(cfg, overrides, key):
    root, path = cfg
    out = root / f"run-{abs(hash(key + str(overrides)))}"
    assert main(["train", str(path), *overrides, f"output.dir={out}"]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert all(key in x and x[key] is not None for x in lines), key

"""FlexentGRPOTrainer under 2 CPU processes (torchrun, gloo): every rank uses the same strategy
weights and rollout entropy at every step, and the logged metrics are the global token means
(identical on both ranks). Slow: starts two interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("trl")

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig
    from flexent.integrations.trl import EntropyControl, FlexentGRPOTrainer
    from tiny_support import tiny_model  # tests/ is on PYTHONPATH

    out = sys.argv[1]
    model, tok = tiny_model("0123456789+-*=")
    rank = int(os.environ["RANK"])

    def reward(completions, **kw):  # differs within a group, so advantages are non-zero
        return [float(len(c) % 2) for c in completions]

    class Record(TrainerCallback):
        def __init__(self):
            self.rows = []
        def on_step_end(self, args, state, control, **kw):
            t = self.trainer
            self.rows.append({"step": state.global_step, "weights": list(t.controller.weights),
                              "rollout_entropy": t.rollout_entropy,
                              "entropy_mean": t._metrics["train"]["entropy/mean"][-1],
                              "clip_frac": t._metrics["train"]["clip/frac"][-1]})

    args = GRPOConfig(output_dir=out, use_cpu=True, per_device_train_batch_size=4,
                      num_generations=4, steps_per_generation=2, max_completion_length=6,
                      max_steps=4, learning_rate=0.01, report_to=[], logging_steps=1,
                      save_strategy="no", seed=0, temperature=1.0, bf16=False)
    rec = Record()
    data = Dataset.from_dict({"prompt": [f"{i}+{i}=" for i in range(16)]})
    trainer = FlexentGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                                 processing_class=tok, callbacks=[rec],
                                 entropy_control=EntropyControl(strategy="target",
                                                                strategy_params={"target": 1.2}))
    rec.trainer = trainer
    trainer.train()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"world": int(os.environ["WORLD_SIZE"]), "rows": rec.rows}, f)
    """
)


@pytest.mark.slow
def test_two_cpu_processes_agree(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    tests = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29533", str(script), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    a, b = ranks[0]["rows"], ranks[1]["rows"]
    assert [x["step"] for x in a] == [1, 2, 3, 4] == [x["step"] for x in b]
    for x, y in zip(a, b, strict=True):
        # the closed-loop strategy saw the same (globally reduced) entropy on both ranks
        assert x["rollout_entropy"] == y["rollout_entropy"] and x["weights"] == y["weights"]
        assert x["entropy_mean"] == pytest.approx(y["entropy_mean"], rel=1e-6)
        assert x["clip_frac"] == pytest.approx(y["clip_frac"], rel=1e-6)
    assert len({tuple(x["weights"]) for x in a}) > 1  # the controller acted

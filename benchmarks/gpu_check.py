"""One-shot GPU check: flexent on randomly initialised Qwen2 models of real shapes, in one run.

    python benchmarks/gpu_check.py            # CUDA: 0.5B-like and 7B-like (what fits in memory)
    python benchmarks/gpu_check.py --tiny     # tiny shapes on the CPU (the default without CUDA)

Needs torch (with CUDA for the real check), transformers, and for (a) trl and datasets; no
network and no model weights (flexent's character tokenizer, models built from a Qwen2Config).
Prints one Markdown table. The checks:

(a) step: ``FlexentGRPOTrainer`` (``static``; ``id`` + region diagnostics) against TRL's
    ``GRPOTrainer``, seconds per optimizer step side by side, per model, as
    ``bench_trl_step.py`` does on the CPU (its ``one_batch``: generation and scoring, then the
    loss forward + backward of each micro-batch, no optimizer step, seeded alike; the three
    trainers share one model, so they see the same weights and generate the same completions).
(b) loss: ``ppo_clip`` (the fused default path) against ``ppo_clip_reference`` (the readable
    autograd path) and TRL's GRPO formula (``-min(r A, clamp(r, 1 - eps_low, 1 + eps_high) A)``,
    ``GRPOTrainer._compute_loss``), bf16 log-probs ``[8, 4096]``: forward + token-mean +
    backward time and the largest differences of loss and gradient.
(c) memory: peak extra memory of ``token_entropy`` and ``region_stats`` (theory and empirical
    schemes, the full-vocabulary second term) on logits at Qwen2's vocabulary (151,936).
(d) devices: the loss (``ppo_clip``, dynamic thresholds) and its parameter gradient for one
    fixed batch through the same model on CUDA and on the CPU, fp32, TF32 off. Without CUDA
    it compares the CPU with itself (a check of the code path: the difference must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

VOCAB = 151_936  # Qwen2 / Qwen2.5 0.5B-1.5B's vocabulary
SHAPES: dict[str, dict[str, Any]] = {  # the config.json values of the Qwen2.5 checkpoints
    "0.5B-like": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "7B-like": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True),
}  # fmt: skip


@dataclass
class Row:
    check: str  # (a) step | (b) loss | (c) memory | (d) devices
    setting: str
    item: str
    value: float | None  # None: not measured (the note says why)
    unit: str = ""
    note: str = ""


def bench_module(name: str) -> Any:
    """A sibling benchmark script (``bench_trl_step``, ``bench_losses``) as a module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def qwen2(shape: str, vocab: int, device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """A randomly initialised ``Qwen2ForCausalLM`` of ``shape``, built on ``device``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, max_position_embeddings=4096, rope_theta=1e6,
                      attn_implementation="sdpa", **SHAPES[shape])  # fmt: skip
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return Qwen2ForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(default)


def n_params(shape: str, vocab: int) -> int:
    """Parameter count of the shape, from a model on the meta device (no memory)."""
    return sum(p.numel() for p in qwen2(shape, vocab, "meta", torch.float32).parameters())


def free_bytes(device: str) -> int | None:
    return torch.cuda.mem_get_info()[0] if device.startswith("cuda") else None


@contextlib.contextmanager
def peak_extra(device: str) -> Iterator[list[float | None]]:
    """Peak memory above what was allocated on entry, in MiB, into the yielded list's one slot:
    CUDA's allocator peak, or on Linux the process's peak resident set (VmHWM, reset through
    /proc/self/clear_refs); None where neither is available."""
    out: list[float | None] = [None]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        yield out
        torch.cuda.synchronize()
        out[0] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base_kib = _status_kib("VmRSS")
    except OSError:
        yield out
        return
    yield out
    out[0] = (_status_kib("VmHWM") - base_kib) / 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def median_ms(fn: Callable[[], Any], device: str, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


# (a) ------------------------------------------------------------------------------------------


def step_rows(shape: str, args: argparse.Namespace) -> list[Row]:
    """FlexentGRPOTrainer (static; id + diagnostics) against GRPOTrainer on one model."""
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    setting = f"{shape} Qwen2, vocab {args.vocab:,}, {str(dtype)[6:]}, {args.device}"
    need = 2.5 * n_params(shape, args.vocab) * dtype.itemsize  # weights, grads, activations
    free = free_bytes(args.device)
    if free is not None and need > free:
        note = f"skipped: needs ~{need / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free"
        return [Row("(a) step", setting, "all trainers", None, "", note)]
    from flexent.models import build_char_tokenizer

    bench = bench_module("bench_trl_step")
    tok = build_char_tokenizer()
    model = qwen2(shape, args.vocab, args.device, dtype)
    prompts = [f"What is {i} + {j}?" for i in range(1, 9) for j in range(1, 9)]
    trainers = make_trainers(model, tok, prompts, args)
    batch = [{"prompt": q} for q in prompts[: args.batch * args.spg // 4] for _ in range(4)]
    names = list(trainers)
    for name in names:
        bench.one_batch(trainers[name], batch, 0, args.spg)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in names}
    unequal = 0
    for r in range(args.rounds):
        tokens = {}
        for name in names if r % 2 == 0 else names[::-1]:
            sync(args.device)
            seconds, tokens[name] = bench.one_batch(trainers[name], batch, 1000 + r, args.spg)
            times[name].append(seconds / args.spg)
        unequal += len(set(tokens.values())) > 1
    base = statistics.median(times["trl"])
    note = f"{args.rounds} rounds, {args.batch} seq x {args.spg} steps, <= {args.tokens} tokens"
    if unequal:
        note += f"; {unequal} rounds with unequal completions (not comparable)"
    rows = []
    for name in names:
        med = statistics.median(times[name])
        rows.append(Row("(a) step", setting, f"{name}: s / optimizer step", med, "s", note))
        if name != "trl":
            rows.append(Row("(a) step", setting, f"{name} / trl", med / base, "x"))
    del trainers, model
    release(args.device)
    return rows


def make_trainers(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict:
    """bench_trl_step.trainers' three trainers, on ``args.device`` (bf16 on CUDA), sharing
    ``model`` (no optimizer step is taken, and a 7B model fits once, not three times)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from flexent.integrations.trl import EntropyControl, FlexentGRPOTrainer

    def reward(completions, **kw):
        return [float(len(c) % 3 == 0) for c in completions]

    cuda = args.device.startswith("cuda")
    cfg = dict(output_dir=tempfile.mkdtemp(prefix="gpu_check_"), use_cpu=not cuda, bf16=cuda,
               per_device_train_batch_size=args.batch, num_generations=4,
               steps_per_generation=args.spg, max_completion_length=args.tokens, report_to=[],
               loss_type="dapo", temperature=1.0, seed=0)  # fmt: skip
    make = dict(reward_funcs=reward, train_dataset=Dataset.from_dict({"prompt": prompts}),
                processing_class=tok)  # fmt: skip
    return {
        "trl": GRPOTrainer(model=model, args=GRPOConfig(**cfg), **make),
        "flexent static": FlexentGRPOTrainer(model=model, args=GRPOConfig(**cfg), **make,
                                             entropy_control=EntropyControl(region_schemes=())),
        "flexent id + diagnostics": FlexentGRPOTrainer(
            model=model, args=GRPOConfig(**cfg), **make,
            entropy_control=EntropyControl(strategy="id")),
    }  # fmt: skip


def release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# (b) ------------------------------------------------------------------------------------------


def trl_grpo_loss(logprobs, old_logprobs, advantages, eps_low, eps_high):
    """TRL 1.16's per-token GRPO loss (GRPOTrainer._compute_loss, loss_type grpo/dapo)."""
    coef_1 = torch.exp(logprobs - old_logprobs)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    adv = advantages.unsqueeze(1)
    return -torch.min(coef_1 * adv, coef_2 * adv)


def loss_rows(args: argparse.Namespace) -> list[Row]:
    from flexent.losses import ppo_clip, ppo_clip_reference

    B, T = args.loss_shape
    x = bench_module("bench_losses").make_inputs(B, T, args.device)
    lp = x["logprobs"].detach().to(torch.bfloat16)
    old, adv, mask = x["old_logprobs"].to(torch.bfloat16), x["advantages"], x["mask"]
    setting = f"ppo_clip, bf16 log-probs [{B}, {T}], eps 0.2 / 0.28, {args.device}"

    def flexent(fn):
        return lambda v: fn(v, old, adv, mask, eps_low=0.2, eps_high=0.28).per_token_loss

    paths = {
        "fused (ppo_clip)": flexent(ppo_clip),
        "readable (ppo_clip_reference)": flexent(ppo_clip_reference),
        "TRL formula": lambda v: trl_grpo_loss(v, old, adv, 0.2, 0.28),
    }
    results = {}
    for name, fn in paths.items():
        v = lp.clone().requires_grad_(True)

        def step(fn=fn, v=v):
            v.grad = None
            per_token = fn(v)
            ((per_token * mask).sum() / mask.sum()).backward()  # token-mean
            return per_token.detach().float() * mask, v.grad.float() * mask

        loss, grad = step()
        results[name] = (loss, grad, median_ms(step, args.device, args.repeats))
    rows = []
    fused_loss, fused_grad, fused_ms = results["fused (ppo_clip)"]
    for name, (loss, grad, ms) in results.items():
        rows.append(Row("(b) loss", setting, f"{name}: fwd + bwd", ms, "ms"))
        if name.startswith("fused"):
            continue
        rows.append(Row("(b) loss", setting, f"fused / {name.split(' ')[0]} time", fused_ms / ms,
                        "x"))  # fmt: skip
        dl = float((fused_loss - loss).abs().max())
        dg = float((fused_grad - grad).abs().max())
        rows.append(Row("(b) loss", setting, f"fused vs {name}: max abs loss diff", dl))
        rows.append(Row("(b) loss", setting, f"fused vs {name}: max abs grad diff", dg))
    return rows


# (c) ------------------------------------------------------------------------------------------


def memory_rows(args: argparse.Namespace) -> list[Row]:
    from flexent.diagnostics import region_stats, token_entropy
    from flexent.thresholds import DynamicThresholds

    B, T = args.diag_shape
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    setting = f"logits [{B}, {T}, {args.vocab:,}] {str(dtype)[6:]}, {args.device}"
    logits_bytes = B * T * args.vocab * dtype.itemsize
    free = free_bytes(args.device)
    if free is not None and 4 * logits_bytes > free:
        return [Row("(c) memory", setting, "diagnostics", None, "", "skipped: does not fit")]
    g = torch.Generator(device=args.device).manual_seed(0)
    logits = torch.randn(B, T, args.vocab, generator=g, device=args.device, dtype=dtype) * 2
    ids = torch.randint(0, args.vocab, (B, T, 1), generator=g, device=args.device)
    old = torch.stack(
        [
            row.float().log_softmax(-1).gather(-1, i)[:, 0]
            for row, i in zip(logits, ids, strict=True)
        ]
    )
    lp = old + 0.1 * torch.randn(B, T, generator=g, device=args.device)
    adv = torch.randn(B, generator=g, device=args.device)
    mask = torch.ones(B, T, dtype=torch.bool, device=args.device)
    eps_low, eps_high = DynamicThresholds()(old, w_up=1.0, w_low=1.0)
    rows = []
    with peak_extra(args.device) as mib:
        entropy = token_entropy(logits)
    rows.append(Row("(c) memory", setting, "token_entropy (chunk 1024): peak extra", mib[0],
                    "MiB", f"logits {logits_bytes / 2**20:.0f} MiB"))  # fmt: skip
    with peak_extra(args.device) as mib:
        region_stats(lp, old, adv, mask, entropy=entropy, eps_low=eps_low, eps_high=eps_high,
                     schemes=("theory", "empirical"), old_logits=logits)  # fmt: skip
    rows.append(Row("(c) memory", setting, "region_stats (theory, empirical, full dH): peak extra",
                    mib[0], "MiB"))  # fmt: skip
    if free is None or 6 * logits_bytes * 4 / dtype.itemsize < free:  # naive: ~4 fp32 copies
        from torch.distributions import Categorical

        with peak_extra(args.device) as mib:
            naive = Categorical(logits=logits.float(), validate_args=False).entropy()
        rows.append(Row("(c) memory", setting, "naive Categorical entropy: peak extra", mib[0],
                        "MiB"))  # fmt: skip
        diff = float((entropy.float() - naive).abs().max())
        rows.append(
            Row("(c) memory", setting, "token_entropy vs naive: max abs diff", diff, "nats")
        )
    del logits
    release(args.device)
    return rows


# (d) ------------------------------------------------------------------------------------------


def device_rows(args: argparse.Namespace) -> list[Row]:
    """Loss and gradient of one fixed batch on ``args.device`` against the CPU (fp32)."""
    other = args.device if args.device.startswith("cuda") else "cpu"
    shape = args.parity_model
    setting = f"{shape} Qwen2, vocab {args.vocab:,}, fp32, {other} vs cpu"
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        results = {dev: loss_and_grad(shape, args.vocab, dev) for dev in ("cpu", other)}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    (loss_a, grad_a), (loss_b, grad_b) = results["cpu"], results[other]
    rel_loss = abs(loss_b - loss_a) / max(abs(loss_a), 1e-12)
    rel_grad = float((grad_b - grad_a).norm() / grad_a.norm().clamp(min=1e-30))
    cos = float(torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0))
    note = "no CUDA: the CPU against itself" if other == "cpu" else "TF32 off"
    return [
        Row("(d) devices", setting, "loss (cpu)", loss_a, "", note),
        Row("(d) devices", setting, f"loss: abs({other} - cpu) / abs(cpu)", rel_loss),
        Row("(d) devices", setting, f"gradient: norm({other} - cpu) / norm(cpu)", rel_grad),
        Row("(d) devices", setting, "gradient: cosine", cos),
    ]


def loss_and_grad(shape: str, vocab: int, device: str) -> tuple[float, torch.Tensor]:
    """ppo_clip (dynamic thresholds, token-mean) of a fixed batch and its gradient, float64 on
    the CPU. The model is built on the CPU (same weights everywhere), then moved."""
    from flexent.losses import compute_policy_loss
    from flexent.thresholds import DynamicThresholds

    model = qwen2(shape, vocab, "cpu", torch.float32).to(device)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (2, 48), generator=g)
    noise = 0.05 * torch.randn(2, 24, generator=g)
    logits = model(ids.to(device)).logits[:, -25:-1].float()
    logprobs = torch.log_softmax(logits, -1).gather(-1, ids[:, -24:, None].to(device))[..., 0]
    old = logprobs.detach() + noise.to(device)
    mask = torch.ones(2, 24, dtype=torch.bool, device=device)
    mask[1, 16:] = False
    eps_low, eps_high = DynamicThresholds()(old, w_up=1.0, w_low=1.0)
    adv = torch.tensor([1.0, -1.0], device=device)
    loss, _ = compute_policy_loss("ppo_clip", logprobs, old, adv, mask, eps_low=eps_low,
                                  eps_high=eps_high)  # fmt: skip
    loss.backward()
    grad = torch.cat([p.grad.detach().double().cpu().flatten() for p in model.parameters()])
    value = float(loss.detach())
    del model, logits, logprobs
    release(device)
    return value, grad


# ----------------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = ["| check | setting | measured | value | note |", "|---|---|---|---|---|"]
    for r in rows:
        value = "not measured" if r.value is None else f"{r.value:.4g} {r.unit}".strip()
        lines.append(f"| {r.check} | {r.setting} | {r.item} | {value} | {r.note} |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes (default without CUDA)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--models", nargs="+", choices=sorted(SHAPES), default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    args.device = args.device or ("cuda" if cuda else "cpu")
    args.tiny = args.tiny or not args.device.startswith("cuda")
    small = {
        "vocab": 512,
        "models": ["tiny"],
        "parity_model": "tiny",
        "loss_shape": (4, 64),
        "diag_shape": (2, 16),
        "batch": 8,
        "spg": 2,
        "tokens": 8,
        "rounds": 2,
        "repeats": 3,
    }
    real = {"vocab": VOCAB, "models": ["0.5B-like", "7B-like"], "parity_model": "0.5B-like",
            "loss_shape": (8, 4096), "diag_shape": (4, 4096), "batch": 16, "spg": 4,
            "tokens": 64, "rounds": 3, "repeats": 20}  # fmt: skip
    for key, value in (small if args.tiny else real).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def run(argv: list[str] | None = None) -> list[Row]:
    """Every check, in order; returns the rows (also printed as one table)."""
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[Row] = []
    for shape in args.models:
        rows += step_rows(shape, args)
    rows += loss_rows(args)
    rows += memory_rows(args)
    rows += device_rows(args)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"gpu_check: {name}, torch {torch.__version__}, {'tiny' if args.tiny else 'real'} "
          f"shapes, {torch.get_num_threads()} CPU threads\n")  # fmt: skip
    print(table(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = run(argv)
    bad = [r for r in rows if r.value is not None and not math.isfinite(r.value)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

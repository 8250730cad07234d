"""bf16 autocast vs fp32 for a small Qwen2 forward+backward on the CPU, side by side.

TRL's ``GRPOConfig`` / ``SFTConfig`` default ``bf16=True``. On a CPU without bf16 matrix units
(AVX2 only) the autocast path is much slower than fp32, which is why ``flexent train`` defaults
``trainer.bf16`` to false on CPU and the demo warm-up trains in fp32. Run:

    python benchmarks/bench_bf16_cpu.py            # options: --threads, --batch, --seq, --repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _step(model, ids: torch.Tensor, *, bf16: bool) -> float:
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(ids, labels=ids)
    out.loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # the demo's model size (flexent.demo.Bootstrap): hidden 128, 4 layers, 4 heads
    cfg = Qwen2Config(vocab_size=512, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=4, intermediate_size=512, max_position_embeddings=512)  # fmt: skip
    model = Qwen2ForCausalLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
    times: dict[bool, list[float]] = {False: [], True: []}
    for bf16 in (False, True):  # warm-up
        _step(model, ids, bf16=bf16)
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for bf16 in (False, True):
            times[bf16].append(_step(model, ids, bf16=bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}, threads {args.threads}")
    print(f"fp32 forward+backward: {fp32 * 1e3:.1f} ms (median of {args.repeats})")
    print(f"bf16 autocast        : {bf16 * 1e3:.1f} ms")
    print(f"bf16 / fp32 time     : {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()

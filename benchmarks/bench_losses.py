"""Forward+backward time and peak extra memory of `ppo_clip` with dynamic per-token thresholds
vs scalar thresholds, side by side in one run (issue 2's target: dynamic / static <= 1.15 in time
and <= 1.5 in peak extra memory).

Variants (each: loss, token-mean aggregation and backward to the log-probs):
  static    ppo_clip(eps_low=0.2, eps_high=0.28)
  dynamic   DynamicThresholds()(old_logprobs, w_up=1, w_low=1) computed inside the timed region,
            then ppo_clip with the two [B, T] eps tensors (what a training step does)
  dyn-pre   the same eps tensors precomputed outside the timed region (the loss alone)

Time: median over --repeats of the wall time and of the process CPU time (less sensitive to
other processes on a shared machine; with --threads 1 it is the work done), variants
interleaved in rotating order so that load from other processes hits all of them alike. Peak extra memory: on CUDA the allocator's peak above the
inputs; on CPU the peak resident set of a fresh child process per variant above its resident set
just before the step (Linux VmHWM, reset through /proc/self/clear_refs), with glibc's mmap
threshold pinned so that every tensor is its own mapping and freeing it leaves the RSS.

    python benchmarks/bench_losses.py                      # [64, 4096] float32 on CPU
    python benchmarks/bench_losses.py --device cuda --repeats 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from flexent.losses import aggregate, ppo_clip
from flexent.thresholds import DynamicThresholds

VARIANTS = ("static", "dynamic", "dyn-pre")


def make_inputs(batch: int, seq_len: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, seq_len, generator=g) * 3
    old = old.to(device)
    logprobs = (old + 0.2 * torch.randn(batch, seq_len, generator=g).to(device)).requires_grad_(
        True
    )
    lengths = torch.randint(seq_len // 4, seq_len + 1, (batch, 1), generator=g)
    mask = (torch.arange(seq_len)[None, :] < lengths).to(device)
    advantages = torch.randn(batch, generator=g).to(device)
    return {"logprobs": logprobs, "old_logprobs": old, "advantages": advantages, "mask": mask}


def make_step(variant: str, x: dict[str, torch.Tensor]) -> Callable[[], None]:
    th = DynamicThresholds()
    pre = th(x["old_logprobs"], w_up=1.0, w_low=1.0) if variant == "dyn-pre" else None

    def step() -> None:
        x["logprobs"].grad = None
        if variant == "static":
            eps_low, eps_high = 0.2, 0.28
        elif variant == "dynamic":
            eps_low, eps_high = th(x["old_logprobs"], w_up=1.0, w_low=1.0)
        else:
            assert pre is not None
            eps_low, eps_high = pre
        out = ppo_clip(
            x["logprobs"],
            x["old_logprobs"],
            x["advantages"],
            x["mask"],
            eps_low=eps_low,
            eps_high=eps_high,
        )
        aggregate(out.per_token_loss, x["mask"]).backward()

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_variants(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Median (wall ms, process CPU ms) per variant."""
    x = make_inputs(args.batch, args.seq_len, args.device)
    steps = {v: make_step(v, x) for v in VARIANTS}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i in range(args.repeats):
        order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
        for v in order:
            sync(args.device)
            t0, c0 = time.perf_counter(), time.process_time()
            steps[v]()
            sync(args.device)
            wall[v].append(time.perf_counter() - t0)
            cpu[v].append(time.process_time() - c0)
    return {
        v: (statistics.median(wall[v]) * 1e3, statistics.median(cpu[v]) * 1e3) for v in VARIANTS
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; return that RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_extra_here(variant: str, args: argparse.Namespace) -> int:
    """Peak bytes above the live inputs during one step, measured in this process."""
    x = make_inputs(args.batch, args.seq_len, args.device)
    step = make_step(variant, x)
    # Warm-up step first: lazy initialisation (CUDA kernels; on CPU the pages of library code
    # that a kernel touches for the first time count in the RSS) must not be measured.
    step()
    x["logprobs"].grad = None
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base = reset_peak_rss()
    step()
    return _status_kib("VmHWM") * 1024 - base


def peak_extra(variant: str, args: argparse.Namespace) -> int:
    if args.device.startswith("cuda"):
        return peak_extra_here(variant, args)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, "--child", variant, "--batch", str(args.batch)]
    cmd += ["--seq-len", str(args.seq_len), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {variant!r} failed:\n{proc.stderr}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps({"peak_extra": peak_extra_here(args.child, args)}))
        return 0
    ms = time_variants(args)
    mem = {v: peak_extra(v, args) for v in VARIANTS}
    print(
        f"ppo_clip fwd+bwd, [{args.batch}, {args.seq_len}] float32, device={args.device}, "
        f"threads={torch.get_num_threads()}, repeats={args.repeats}, torch {torch.__version__}"
    )
    print(
        f"{'variant':<9}{'wall ms':>9}{'x static':>10}{'CPU ms':>9}{'x static':>10}"
        f"{'peak extra MiB':>16}{'x static':>10}"
    )
    (ws, cs), ms_ = ms["static"], mem["static"]
    for v in VARIANTS:
        w, c = ms[v]
        print(
            f"{v:<9}{w:>9.2f}{w / ws:>10.3f}{c:>9.2f}{c / cs:>10.3f}"
            f"{mem[v] / 2**20:>16.1f}{mem[v] / ms_:>10.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

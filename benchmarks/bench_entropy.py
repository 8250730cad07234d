"""token_entropy (chunked) vs the naive Categorical(logits).entropy(), side by side in one run.

    python benchmarks/bench_entropy.py                      # logits [4, 2048, 32000] float32 (1 GiB)
    python benchmarks/bench_entropy.py --shape 2 512 32000  # smaller

Time: both functions run in this process on the same logits, alternating, after one warm-up
call each; the median of ``--repeats`` runs is reported.

Peak extra memory: torch's CPU allocations are invisible to tracemalloc, so each function runs
once more in a fresh child process (this script with ``--child``). The child builds the logits,
warms the function up on a tiny input, resets the kernel's peak-RSS counter (writes ``5`` to
/proc/self/clear_refs), reads VmRSS, runs the function once, and reports VmHWM - VmRSS: the
peak resident memory the call added on top of the logits and its output. Linux only.
Targets (issue 3): peak extra <= 25% of the naive path's, time <= 1.2x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.distributions import Categorical

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from flexent.diagnostics import token_entropy


def naive(logits: torch.Tensor, chunk_size: int) -> torch.Tensor:
    return Categorical(logits=logits, validate_args=False).entropy()


def chunked(logits: torch.Tensor, chunk_size: int) -> torch.Tensor:
    return token_entropy(logits, chunk_size=chunk_size)


FUNCS = {"naive": naive, "chunked": chunked}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(name: str, shape: list[int], chunk_size: int) -> None:
    fn = FUNCS[name]
    fn(torch.randn(2, 8, shape[-1]), chunk_size)  # warm-up: kernels, thread pools
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    out = fn(logits, chunk_size)
    peak = _status_kib("VmHWM")
    print(json.dumps({"extra_mib": (peak - before) / 1024, "out_numel": out.numel()}))


def peak_extra_mib(name: str, shape: list[int], chunk_size: int) -> float:
    cmd = [sys.executable, __file__, "--child", name, "--chunk-size", str(chunk_size),
           "--shape", *map(str, shape)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["extra_mib"])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shape", type=int, nargs=3, default=[4, 2048, 32000], metavar=("B", "T", "V"))
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=sorted(FUNCS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.shape, args.chunk_size)
        return

    logits = torch.randn(*args.shape, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in FUNCS}
    for fn in FUNCS.values():
        fn(logits, args.chunk_size)  # warm-up
    for _ in range(args.repeats):
        for name, fn in FUNCS.items():
            t0 = time.perf_counter()
            fn(logits, args.chunk_size)
            times[name].append(time.perf_counter() - t0)
    err = (chunked(logits, args.chunk_size) - naive(logits, args.chunk_size)).abs().max()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    mem = {name: peak_extra_mib(name, args.shape, args.chunk_size) for name in FUNCS}

    gib = logits.numel() * logits.element_size() / 2**30
    print(f"logits {list(args.shape)} float32 ({gib:.2f} GiB), chunk_size {args.chunk_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}; max |difference| {float(err):.2e}")  # fmt: skip
    print("peak extra memory: VmHWM - VmRSS around one call in a fresh child process\n")
    print("| path | time (s) | peak extra memory (MiB) |")
    print("|---|---|---|")
    for name in FUNCS:
        print(f"| {name} | {med[name]:.3f} | {mem[name]:.0f} |")
    print(f"\ntime ratio chunked/naive: {med['chunked'] / med['naive']:.2f} (target <= 1.2)")
    print(f"memory ratio chunked/naive: {mem['chunked'] / mem['naive']:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()

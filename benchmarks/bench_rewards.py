"""Reward throughput, input scaling and timeout overshoot (CPU).

Run: python benchmarks/bench_rewards.py [--scaling-only]

Prints per-item time of: the math reward's exact-match fast path, a symbolic check in the
worker process (IPC + math-verify), a countdown check, a hostile math answer rejected by the
complexity caps; then the scaling of the extractors on hostile inputs (unclosed tags and boxes)
at 64 KB, 512 KB and 4 MB with the ratio between consecutive sizes: linear code gives ~8x per
8x the input (the old quadratic code gave ~64x: 10 s at 128 KB, 8 MB never finished); then how
far past its 0.5 s limit a hanging math check returns (main thread and another thread).
Benchmarks report; they do not assert.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable

from flexent.rewards import get_reward
from flexent.rewards.extract import answer_tag, last_boxed, last_number

SIZES = (64 * 1024, 512 * 1024, 4 * 1024 * 1024)


def _repeat(unit: str, size: int) -> str:
    return unit * (size // len(unit))


def _scaling_cases() -> list[tuple[str, Callable[[str], object], str]]:
    countdown = get_reward("countdown", last_line_fallback=True)
    ex = {"numbers": [4, 25], "target": 100}
    think = get_reward("format", style="think_answer", max_chars=10**9)
    return [
        ("answer_tag, unclosed <answer>", answer_tag, "<answer>"),
        ("answer_tag, closed pairs", answer_tag, "<answer>1</answer>"),
        ("last_boxed, unclosed \\boxed{", last_boxed, "\\boxed{"),
        ("last_boxed, nested \\boxed{ + }", last_boxed, "\\boxed{}"),
        ("last_boxed, brace-less \\boxed x", last_boxed, "\\boxed x "),
        ("last_number, 1,", last_number, "1,"),
        ("countdown score, unclosed tags", lambda t: countdown.score(t, ex), "<answer>"),
        ("format think_answer, </think>x", lambda t: think.score(t), "</think>x"),
    ]


def scaling() -> None:
    print(f"{'hostile input':36s}" + "".join(f"{s // 1024:>9d} KB" for s in SIZES) + "  ratios")
    for label, fn, unit in _scaling_cases():
        times = []
        for size in SIZES:
            text = _repeat(unit, size)
            if "nested" in label:  # \boxed{ * k + } * k: one complete box around the rest
                k = size // 9
                text = "\\boxed{" * k + "}" * k
            elif "think" in label:
                text = "<think>" + text + "<answer>1</answer>"  # each </think> is tried
            start = time.perf_counter()
            fn(text)
            times.append(time.perf_counter() - start)
        ratios = " ".join(f"{b / a:5.1f}x" for a, b in itertools.pairwise(times))
        print(f"{label:36s}" + "".join(f"{t * 1e3:9.1f} ms" for t in times) + f"  {ratios}")


def per_item(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    if "--scaling-only" in sys.argv:
        scaling()
        return
    math_reward = get_reward("math", timeout=0.5)
    math_reward.score(r"\boxed{0.75}", {"answer": r"\frac{3}{4}"})  # start the worker
    exact = per_item(lambda: math_reward.score(r"so \boxed{42}", {"answer": "#### 42"}), 2000)
    symbolic = per_item(lambda: math_reward.score(r"\boxed{0.75}", {"answer": r"\frac{3}{4}"}), 50)
    countdown = get_reward("countdown")
    ex = {"numbers": [3, 7, 25, 50], "target": 100}
    cd = per_item(lambda: countdown.score("<answer>(7 - 3) * 25</answer>", ex), 2000)
    print(f"math exact-match path   {exact * 1e6:9.1f} us/item")
    print(f"math symbolic (worker)  {symbolic * 1e3:9.2f} ms/item")
    print(f"countdown               {cd * 1e6:9.1f} us/item")
    hang = (r"\boxed{9^{9^{9}}}", {"answer": "1"})
    capped = per_item(lambda: math_reward.score(*hang), 2000)
    print(f"math too_complex (caps) {capped * 1e6:9.1f} us/item   (9^{{9^{{9}}}}, never parsed)")
    print()
    scaling()
    print()
    uncapped = get_reward("math", timeout=0.5, max_power_depth=2)  # let the hang reach sympy
    uncapped.score(r"\boxed{0.75}", {"answer": r"\frac{3}{4}"})
    for where in ("main thread", "other thread"):
        time.sleep(8)  # let the replacement worker finish starting
        start = time.perf_counter()
        if where == "main thread":
            uncapped.score(*hang)
        else:
            t = threading.Thread(target=uncapped.score, args=hang)
            t.start()
            t.join()
        print(f"hang, limit 0.5 s, {where:12s} returned after {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()

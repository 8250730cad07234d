"""Reward throughput and timeout overshoot (CPU). Run: python benchmarks/bench_rewards.py

Prints per-item time of: the math reward's exact-match fast path, a symbolic check in the
worker process (IPC + math-verify), a countdown check, and how far past its 0.5 s limit a
hanging math check returns (main thread and another thread).
"""

from __future__ import annotations

import threading
import time

from flexent.rewards import get_reward


def per_item(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
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
    for where in ("main thread", "other thread"):
        time.sleep(8)  # let the replacement worker finish starting
        start = time.perf_counter()
        if where == "main thread":
            math_reward.score(*hang)
        else:
            t = threading.Thread(target=math_reward.score, args=hang)
            t.start()
            t.join()
        print(f"hang, limit 0.5 s, {where:12s} returned after {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()

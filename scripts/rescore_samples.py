"""Score a ``flexent eval`` run's saved completions again with another reward or parameters.

How much of a low score is the answer extraction, not the model? ``flexent eval`` writes every
completion to ``samples.jsonl``; this script scores them again (nothing is generated) and prints,
per benchmark, mean@n and pass@n as saved and as rescored, each with a 95 % percentile-bootstrap
interval over problems, and how many samples changed from wrong to right and back.

    python scripts/rescore_samples.py runs/eval/samples.jsonl --reward math \\
        --reward-param number_fallback=true     # the last number when there is no \\boxed{}

docs/models.md quotes it for SmolLM2-135M on GSM8K.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flexent.commands.eval import reward_params
from flexent.evaluation.metrics import bootstrap_interval, pass_at_k
from flexent.rewards.registry import get_reward, list_rewards


def read_samples(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SystemExit(f"error: {path}:{i}: not JSON ({err.msg})") from None
        missing = [k for k in ("benchmark", "answer", "scores", "completions") if k not in row]
        if missing:
            raise SystemExit(
                f"error: {path}:{i}: missing {missing} (a flexent eval samples.jsonl?)"
            )
        rows.append(row)
    if not rows:
        raise SystemExit(f"error: {path}: no samples")
    return rows


def _summary(per_problem: list[list[float]]) -> str:
    means = [sum(s) / len(s) for s in per_problem]
    n = min(len(s) for s in per_problem)
    passes = [pass_at_k(len(s), sum(v > 0 for v in s), n) for s in per_problem]
    out = []
    for name, values in ((f"mean@{n}", means), (f"pass@{n}", passes)):
        lo, hi = bootstrap_interval(values)
        out.append(
            f"{name} {100 * sum(values) / len(values):.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"
        )
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("samples", type=Path, help="samples.jsonl written by flexent eval")
    p.add_argument("--reward", required=True, choices=list_rewards(), metavar="NAME")
    p.add_argument("--reward-param", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument of the reward (YAML value), as in flexent eval")  # fmt: skip
    args = p.parse_args(argv)
    if not args.samples.is_file():
        p.error(f"samples file not found: {args.samples}")
    params = reward_params(args.reward_param)  # flexent eval's own parsing and errors
    reward = get_reward(args.reward, **params)
    by_bench: dict[str, list[dict[str, Any]]] = {}
    for row in read_samples(args.samples):
        by_bench.setdefault(row["benchmark"], []).append(row)
    for bench, rows in by_bench.items():
        saved = [[float(s) for s in row["scores"]] for row in rows]
        new = [
            [float(reward.score(c, row).score or 0.0) for c in row["completions"]] for row in rows
        ]
        pairs = [(a, b) for old, cur in zip(saved, new, strict=True)
                 for a, b in zip(old, cur, strict=True)]  # fmt: skip
        gained = sum(a <= 0 < b for a, b in pairs)
        lost = sum(b <= 0 < a for a, b in pairs)
        print(f"{bench} ({len(rows)} problems)")
        print(f"  as saved:  {_summary(saved)}")
        print(f"  rescored:  {_summary(new)}  ({args.reward}, {params})")
        print(f"  samples wrong -> right: {gained}, right -> wrong: {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

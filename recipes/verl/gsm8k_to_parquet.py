"""Convert a GSM8K jsonl (``question``, ``answer`` ending in ``#### N``) to verl's parquet layout.

verl's default reward (``verl.utils.reward_score``) scores rows whose ``data_source`` is
``openai/gsm8k`` by the number after ``####`` in the response, so the prompt asks for that form.

    python recipes/verl/gsm8k_to_parquet.py IN.jsonl OUT.parquet
"""

from __future__ import annotations

import json
import sys

INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def convert(src: str, dst: str) -> int:
    import pandas as pd

    rows = []
    with open(src) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            ex = json.loads(line)
            if "####" not in ex.get("answer", ""):
                raise ValueError(f"{src}:{line_no}: answer has no '#### N' final answer")
            answer = ex["answer"].split("####")[-1].strip().replace(",", "")
            rows.append(
                {
                    "data_source": "openai/gsm8k",
                    "prompt": [{"role": "user", "content": f"{ex['question']} {INSTRUCTION}"}],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": answer},
                    "extra_info": {"index": len(rows)},
                }
            )
    pd.DataFrame(rows).to_parquet(dst)
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(f"wrote {convert(sys.argv[1], sys.argv[2])} rows to {sys.argv[2]}")

"""Convert a GSM8K jsonl (``question``, ``answer`` ending in ``#### N``) to verl's parquet layout.

The rows are those of verl's ``examples/data_preprocess/gsm8k.py``: ``data_source``
``openai/gsm8k``, ``prompt`` one user message (question + the ``####`` instruction), ``ability``,
``reward_model {style: rule, ground_truth: N}``, ``extra_info {split, index, answer, question}``.
verl's default reward (``verl.utils.reward_score``) scores ``openai/gsm8k`` rows by the number
after ``####`` in the response. ``flexent train`` reads the same file (``data.source: OUT.parquet``,
``data.split: null``; the gold is found at ``reward_model.ground_truth``).

    python recipes/verl/gsm8k_to_parquet.py IN.jsonl OUT.parquet [SPLIT]

SPLIT (``extra_info.split``) defaults to ``train`` when IN's file name contains ``train``, else
``test``.
"""

from __future__ import annotations

import json
import os
import sys

INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def convert(src: str, dst: str, split: str | None = None) -> int:
    import pandas as pd

    if split is None:
        split = "train" if "train" in os.path.basename(src) else "test"

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
                    "extra_info": {
                        "split": split,
                        "index": len(rows),
                        "answer": ex["answer"],
                        "question": ex["question"],
                    },
                }
            )
    pd.DataFrame(rows).to_parquet(dst)
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    n = convert(sys.argv[1], sys.argv[2], *sys.argv[3:])
    print(f"wrote {n} rows to {sys.argv[2]}")

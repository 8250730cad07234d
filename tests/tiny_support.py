"""Helpers of the tests: a tiny offline model (the ``tiny`` fixtures of conftest.py build it too),
countdown-style prompt rows, and a train config over both."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

ALPHABET = "0123456789+-*/=()> "


def tiny_model(alphabet: str | None = None, *, seed: int = 0) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a 1-layer char-level Qwen2 (hidden 32, 2 heads), no download;
    ``alphabet`` None is the char tokenizer's default (``string.printable``)."""
    from flexent.models import build_char_tokenizer, build_tiny_qwen2

    tokenizer = build_char_tokenizer(alphabet)
    model = build_tiny_qwen2(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=seed)
    return model, tokenizer


def save_tiny_model(folder: Path, alphabet: str | None = ALPHABET) -> Path:
    """:func:`tiny_model` and its tokenizer saved in ``folder``."""
    model, tokenizer = tiny_model(alphabet)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_countdown_rows(path: Path, n: int = 8) -> Path:
    """``n`` two-number countdown rows (``prompt``, ``answer``, ``numbers``, ``target``)."""
    rows = [{"prompt": f"{i} {i + 1}>{2 * i + 1}=", "answer": f"{i}+{i + 1}",
             "numbers": [i, i + 1], "target": 2 * i + 1} for i in range(1, n + 1)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_train_env(root: Path) -> Path:
    """A tiny model, countdown rows and a 2-step `id` train config in ``root``; returns the
    config's path (its ``output.dir`` is ``root / "run"``)."""
    save_tiny_model(root / "model")
    write_countdown_rows(root / "data.jsonl")
    cfg = root / "cfg.yaml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            model: {{path: {root / "model"}}}
            data: {{source: {root / "data.jsonl"}, split: null}}
            reward: {{name: countdown}}
            trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4,
                       steps_per_generation: 2, max_completion_length: 4, save_steps: 1,
                       use_cpu: true, report_to: []}}
            entropy_control: {{strategy: id}}
            evaluation: {{enabled: false}}
            output: {{dir: {root / "run"}}}
            """
        )
    )
    return cfg

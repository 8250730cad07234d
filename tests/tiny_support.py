"""Helpers of the end-to-end tests: a tiny offline model and countdown-style prompt rows."""

from __future__ import annotations

import json
from pathlib import Path

ALPHABET = "0123456789+-*/=()> "


def save_tiny_model(folder: Path, alphabet: str = ALPHABET) -> Path:
    """A 1-layer char-level Qwen2 and its tokenizer saved in ``folder`` (no download)."""
    from flexent.models import build_char_tokenizer, build_tiny_qwen2

    tokenizer = build_char_tokenizer(alphabet)
    model = build_tiny_qwen2(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_countdown_rows(path: Path, n: int = 8) -> Path:
    """``n`` two-number countdown rows (``prompt``, ``answer``, ``numbers``, ``target``)."""
    rows = [{"prompt": f"{i} {i + 1}>{2 * i + 1}=", "answer": f"{i}+{i + 1}",
             "numbers": [i, i + 1], "target": 2 * i + 1} for i in range(1, n + 1)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path

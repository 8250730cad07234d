"""Helpers of the tests: a tiny offline model (the ``tiny`` fixtures of conftest.py build it too)
and countdown-style prompt rows."""

from __future__ import annotations

import json
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

"""``format``: a shaping reward for the required answer format.

Styles: ``"boxed"`` (a complete, non-empty ``\\boxed{}``), ``"answer"`` (a non-empty
``<answer>...</answer>``), ``"think_answer"`` (the whole completion is
``<think>...</think>`` followed by ``<answer>...</answer>``). Scores ``weight`` or 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flexent.rewards.base import Reward, RewardResult, completion_text
from flexent.rewards.extract import answer_tag, last_boxed
from flexent.rewards.registry import register_reward

_THINK_ANSWER = re.compile(r"\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
STYLES = ("boxed", "answer", "think_answer")


@register_reward("format")
class FormatReward(Reward):
    """``weight`` when the completion has the required format, else 0.

    >>> FormatReward(style="think_answer", weight=0.1)(
    ...     ["<think>7*3=21</think> <answer>21</answer>", "<answer>21</answer>"])
    [0.1, 0.0]
    """

    name = "format"

    def __init__(
        self, *, style: str = "boxed", weight: float = 1.0, max_chars: int = 20_000
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"format reward: style must be one of {STYLES}, got {style!r}")
        self.style, self.weight, self.max_chars = style, float(weight), max_chars

    def score(self, completion: Any, example: Mapping[str, Any] | None = None) -> RewardResult:
        text = completion_text(completion)
        if len(text) > self.max_chars:
            return RewardResult(0.0, {"reason": "too_long"})
        if self.style == "boxed":
            found = last_boxed(text)
        elif self.style == "answer":
            found = answer_tag(text)
        else:
            m = _THINK_ANSWER.fullmatch(text)
            found = m.group(1) if m else None
        ok = bool(found and found.strip())
        return RewardResult(
            self.weight if ok else 0.0, {"reason": "ok" if ok else "format_missing"}
        )

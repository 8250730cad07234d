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

_SPACES = re.compile(r"\s*")
STYLES = ("boxed", "answer", "think_answer")


@register_reward("format")
class FormatReward(Reward):
    """``weight`` when the completion has the required format, else 0.

    >>> FormatReward(style="think_answer", weight=0.1)(
    ...     ["<think>7*3=21</think> <answer>21</answer>", "<answer>21</answer>"])
    [0.1, 0.0]
    """

    name = "format"
    columns: tuple[str, ...] = ()

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
            found = think_answer(text)
        ok = bool(found and found.strip())
        return RewardResult(
            self.weight if ok else 0.0, {"reason": "ok" if ok else "format_missing"}
        )


def think_answer(text: str) -> str | None:
    """The answer when the text is exactly ``<think>...</think>`` then ``<answer>...</answer>``.

    Same result as ``re.fullmatch(r"\\s*<think>.*?</think>\\s*<answer>(.*?)</answer>\\s*", text,
    re.DOTALL).group(1)`` (``None`` when it does not match), in linear time (that regex is
    quadratic on many ``</think><answer>`` pairs). The closing ``</answer>`` must end the text
    (whitespace aside), so it is fixed; the regex then takes the first ``</think>`` (lazy) that
    is followed by optional whitespace and an ``<answer>`` opening before that closing tag.

    >>> think_answer("<think>a</think> <answer> 3 </answer>")
    ' 3 '
    >>> think_answer("<think>a</think><answer>3</answer> trailing") is None
    True
    """
    body = text.rstrip()
    if not body.endswith("</answer>"):
        return None
    close = len(body) - len("</answer>")
    start = len(text) - len(text.lstrip())
    if not text.startswith("<think>", start):
        return None
    pos = start + len("<think>")
    while (think_end := text.find("</think>", pos)) >= 0:
        after = think_end + len("</think>")
        spaces = _SPACES.match(text, after)  # always matches (possibly empty)
        opening = spaces.end() if spaces else after
        if text.startswith("<answer>", opening) and opening + len("<answer>") <= close:
            return text[opening + len("<answer>") : close]
        pos = think_end + 1
    return None

"""``arithmetic``: is the final number equal to the integer answer?

The final number is read from the last ``\\boxed{}``, else the last ``<answer>`` tag, else the
last number in the text (``1,234`` and ``-12`` understood; ``12.0`` equals ``12``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from flexent.rewards.base import Reward, RewardResult, completion_text, require
from flexent.rewards.extract import answer_tag, last_boxed, last_number, strip_thousands
from flexent.rewards.registry import register_reward

# The exponent of a number in Fraction's syntax ("1e3", "2.5E-4", "1e1_000").
_EXPONENT = re.compile(r"[eE]([-+]?\d+(?:_\d+)*)")


def _as_number(s: str | None, max_digits: int) -> Fraction | None:
    if s is None:
        return None
    s = strip_thousands(s.strip().strip("$").strip())
    if len(s) > max_digits:
        return None
    # Fraction("1e999999999") would build 10**999999999; no |exponent| above max_digits.
    exponent = _EXPONENT.search(s)
    if exponent:
        digits = exponent.group(1).lstrip("+-").replace("_", "").lstrip("0")
        if len(digits) > len(str(max_digits)) or int(digits or "0") > max_digits:
            return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


@register_reward("arithmetic")
class ArithmeticReward(Reward):
    """1.0 when the final number equals ``answer`` exactly, else 0.0.

    >>> ArithmeticReward()(["so \\\\boxed{1,368}", "I think -5", "none"], answer=["1368", "-5", "3"])
    [1.0, 1.0, 0.0]
    """

    name = "arithmetic"
    columns: tuple[str, ...] = ("answer",)

    def __init__(
        self, *, answer_key: str = "answer", max_chars: int = 20_000, max_digits: int = 100
    ) -> None:
        super().__init__()
        self.answer_key, self.max_chars, self.max_digits = answer_key, max_chars, max_digits
        self.columns = (answer_key,)

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        """A missing answer column, or a gold answer that is not a number.

        >>> ArithmeticReward().row_problem({"answer": "twelve"})
        "column 'answer' must be a number (reward 'arithmetic'), got 'twelve'"
        """
        problem = super().row_problem(row)
        if problem is None and _as_number(str(row[self.answer_key]), self.max_digits) is None:
            gold = row[self.answer_key]
            return f"column {self.answer_key!r} must be a number (reward {self.name!r}), got {gold!r:.80}"
        return problem

    def score(self, completion: Any, example: Mapping[str, Any]) -> RewardResult:
        gold = _as_number(str(require(example, self.answer_key, self.name)), self.max_digits)
        if gold is None:
            return RewardResult(
                None, {"error": f"gold {example[self.answer_key]!r} is not a number"}
            )
        text = completion_text(completion)[-self.max_chars :]
        for found in (last_boxed(text), answer_tag(text), last_number(text)):
            if found is not None:
                value = _as_number(found, self.max_digits)
                if value is None:
                    return RewardResult(0.0, {"extracted": found[:200], "reason": "not_a_number"})
                ok = value == gold
                return RewardResult(
                    float(ok), {"extracted": found, "reason": "correct" if ok else "wrong"}
                )
        return RewardResult(0.0, {"extracted": None, "reason": "no_answer"})

"""``countdown``: is the answer expression a valid way to reach the target?

The answer is the content of the last ``<answer>...</answer>``; if there is none, the last
``\\boxed{}``; with ``last_line_fallback=True``, else the last non-empty line. Checking is
:func:`flexent.tasks.countdown.verify_countdown` (``ast`` + exact fractions, never ``eval``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flexent.rewards.base import Reward, RewardResult, completion_text, is_integer, require
from flexent.rewards.extract import answer_tag, last_boxed
from flexent.rewards.registry import register_reward
from flexent.tasks.countdown import verify_countdown


@register_reward("countdown")
class CountdownReward(Reward):
    """1.0 for an expression over the given numbers that equals ``target``, else 0.0.

    Reads the per-item columns ``numbers`` (list of ints) and ``target`` (int).

    >>> reward = CountdownReward()
    >>> reward(["<answer>(7 - 3) * 25</answer>", "<answer>7 * 3 * 25</answer>"],
    ...        numbers=[[3, 7, 25]] * 2, target=[100, 100])
    [1.0, 0.0]
    >>> reward.score("<answer>3 * 25 + 25</answer>", {"numbers": [3, 7, 25], "target": 100}).info
    {'extracted': '3 * 25 + 25', 'reason': 'number_reused'}
    """

    name = "countdown"
    columns: tuple[str, ...] = ("numbers", "target")

    def __init__(
        self,
        *,
        exactly_once: bool = False,
        last_line_fallback: bool = False,
        max_chars: int = 200,
        max_magnitude: int = 10**12,
    ) -> None:
        super().__init__()
        self.exactly_once = exactly_once
        self.last_line_fallback = last_line_fallback
        self.max_chars = max_chars
        self.max_magnitude = max_magnitude

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        """A missing column, ``numbers`` that is not a list of integers or a ``target`` that
        is not an integer.

        >>> CountdownReward().row_problem({"numbers": "4 25", "target": 29})
        "column 'numbers' must be a list of integers (reward 'countdown'), got '4 25'"
        """
        problem = super().row_problem(row)
        if problem is not None:
            return problem
        numbers, target = row["numbers"], row["target"]
        if not isinstance(numbers, (list, tuple)) or not all(map(is_integer, numbers)):
            return (
                f"column 'numbers' must be a list of integers (reward {self.name!r}), got "
                f"{numbers!r:.80}"
            )
        if not is_integer(target):
            return f"column 'target' must be an integer (reward {self.name!r}), got {target!r:.80}"
        return None

    def extract(self, completion: Any) -> str | None:
        text = completion_text(completion)
        found = answer_tag(text)
        if found is None:
            found = last_boxed(text)
        if found is None and self.last_line_fallback:
            found = next((s for line in reversed(text.splitlines()) if (s := line.strip())), None)
        return found

    def score(self, completion: Any, example: Mapping[str, Any]) -> RewardResult:
        try:
            numbers = [int(x) for x in require(example, "numbers", self.name)]
            target = int(require(example, "target", self.name))
        except (TypeError, ValueError) as e:
            return RewardResult(None, {"error": f"bad numbers/target column: {e}"})
        expr = self.extract(completion)
        if expr is None:
            return RewardResult(0.0, {"extracted": None, "reason": "no_answer"})
        ok, reason = verify_countdown(
            expr,
            numbers,
            target,
            exactly_once=self.exactly_once,
            max_chars=self.max_chars,
            max_magnitude=self.max_magnitude,
        )
        return RewardResult(1.0 if ok else 0.0, {"extracted": expr[:200], "reason": reason})

"""The reward interface shared by every engine.

A reward is an object with two entry points:

* ``reward(completions, **columns) -> list[float | None]``: TRL's reward-function signature.
  ``columns`` hold one list per dataset column (``answer``, ``numbers``, ...), aligned with
  ``completions``; non-list keyword arguments (TRL's ``trainer_state``, ``log_metric``, ...) are
  not per-item data (a reward may use ``log_metric(name, value)`` to log a scalar, as ``math``
  does for its timeouts). ``None`` means "not scorable" (e.g. an unparseable gold answer) and
  is excluded from the mean by TRL.
* ``reward.columns`` / ``reward.missing_columns(row)`` / ``reward.row_problem(row)``: the
  per-item columns a reward reads, and why a row cannot be scored (a missing column, a value
  of the wrong type), so a dataset can be checked before generating.
* ``reward.score(completion, example) -> RewardResult``: the per-item form used by verl's
  ``compute_score`` and by evaluation; ``info`` says what was extracted and why it scored so.

Rewards never raise on model output: a malformed completion scores 0 with ``info["error"]`` or
``info["reason"]``. Missing gold columns are a programming error and raise ``KeyError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RewardResult:
    """The score of one completion plus what the checker saw (``extracted``, ``reason``, ...)."""

    score: float | None
    info: dict[str, Any] = field(default_factory=dict)


def completion_text(completion: Any) -> str:
    """The text to score: a string as is; for chat messages, the last assistant message.

    >>> completion_text("x = 2")
    'x = 2'
    >>> completion_text([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "4"}])
    '4'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content(completion)
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, Mapping)]
        assistant = [m for m in messages if m.get("role") == "assistant"]
        chosen = assistant or messages
        return _content(chosen[-1]) if chosen else ""
    return "" if completion is None else str(completion)


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal form: [{"type": "text", "text": ...}, ...]
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "".join(p for p in parts if isinstance(p, str))
    return "" if content is None else str(content)


class Reward:
    """Base class: subclasses implement ``score``; ``__call__`` maps it over a TRL batch.

    ``name`` is what TRL logs the reward under (``rewards/<name>/mean``).
    """

    name: str = "reward"
    #: The per-item dataset columns ``score`` reads (``()``: none, or unknown).
    columns: tuple[str, ...] = ()

    def __init__(self) -> None:
        # TRL names reward columns after ``__name__``; an instance has none by default.
        self.__name__ = self.name

    def missing_columns(self, row: Mapping[str, Any]) -> list[str]:
        """The columns of :attr:`columns` that ``row`` (one dataset row) lacks, in order.

        Check a dataset before generating: ``reward.missing_columns(dataset[0])``.

        >>> class Needs(Reward):
        ...     columns = ("numbers", "target")
        >>> Needs().missing_columns({"numbers": [1, 2], "prompt": "..."})
        ['target']
        """
        return [c for c in self.columns if c not in row]

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why ``row`` cannot be scored: a missing column or (a subclass's check) a value of
        the wrong type; ``None`` when it can. Check a dataset with it before generating.

        >>> class Needs(Reward):
        ...     columns = ("target",)
        >>> Needs().row_problem({"prompt": "..."})
        "lacks the column(s) ['target'] that reward 'reward' reads; it has ['prompt']"
        """
        missing = self.missing_columns(row)
        if missing:
            return (
                f"lacks the column(s) {missing} that reward {self.name!r} reads; it has "
                f"{sorted(row)}"
            )
        return None

    def score(self, completion: Any, example: Mapping[str, Any]) -> RewardResult:
        raise NotImplementedError

    def score_batch(self, completions: Sequence[Any], **columns: Any) -> list[RewardResult]:
        """``score`` of each completion of a TRL batch (same arguments as ``__call__``)."""
        examples = per_item(columns, len(completions))
        return [self.score(c, ex) for c, ex in zip(completions, examples, strict=True)]

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return [r.score for r in self.score_batch(completions, **columns)]


def per_item(columns: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """Split TRL's column lists into one example dict per completion.

    Only list/tuple columns of length ``n`` are kept; everything else (``trainer_state``,
    callbacks) is not per-item data.

    >>> per_item({"answer": ["1", "2"], "trainer_state": object()}, 2)
    [{'answer': '1'}, {'answer': '2'}]
    """
    kept = {k: v for k, v in columns.items() if isinstance(v, (list, tuple)) and len(v) == n}
    return [{k: v[i] for k, v in kept.items()} for i in range(n)]


def is_integer(value: Any) -> bool:
    """An integer as a dataset column may hold one: an int, an integral float, or the digits
    of one (not a bool).

    >>> [is_integer(v) for v in (3, 3.0, "-12", 3.5, "4 25", True, None)]
    [True, True, True, False, False, False, False]
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None


def require(example: Mapping[str, Any], key: str, reward: str) -> Any:
    """``example[key]`` or a ``KeyError`` that names the reward and the columns it got."""
    if key not in example:
        raise KeyError(
            f"reward {reward!r} needs a per-item column {key!r}; got columns {sorted(example)}"
        )
    return example[key]

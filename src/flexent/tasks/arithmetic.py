"""Integer arithmetic: ``a op b`` with ``digits``-digit operands, ``op`` in ``+ - *``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flexent.tasks import ProceduralTask

PROMPT = "What is {a} {op} {b}? Put your final answer within \\boxed{{}}."
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class ArithmeticProblem:
    a: int
    op: str
    b: int

    @property
    def answer(self) -> int:
        return _APPLY[self.op](self.a, self.b)

    @property
    def key(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    def prompt(self) -> str:
        return PROMPT.format(a=self.a, op=self.op, b=self.b)

    def row(self) -> dict[str, Any]:
        """A dataset row for the ``arithmetic`` reward."""
        return {"prompt": self.prompt(), "answer": str(self.answer), "task": "arithmetic"}


class ArithmeticTask(ProceduralTask["ArithmeticProblem"]):
    """Problems ``a op b`` with ``digits``-digit positive operands, deterministic from ``seed``.

    >>> p = ArithmeticTask(digits=2, ops=("*",), seed=1).problem(0)
    >>> p.answer == p.a * p.b and 10 <= p.a <= 99
    True
    """

    def __init__(
        self, digits: int = 3, ops: Sequence[str] = ("+", "-", "*"), seed: int = 0
    ) -> None:
        if digits < 1:
            raise ValueError(f"ArithmeticTask: digits must be >= 1, got {digits!r}")
        bad = [op for op in ops if op not in _APPLY]
        if not ops or bad:
            raise ValueError(
                f"ArithmeticTask: ops must be a non-empty subset of + - *, got {ops!r}"
            )
        self.digits, self.ops, self.seed = digits, tuple(ops), seed

    def problem(self, index: int) -> ArithmeticProblem:
        rng = random.Random(f"arithmetic:{self.seed}:{index}")
        low, high = 10 ** (self.digits - 1), 10**self.digits - 1
        return ArithmeticProblem(
            rng.randint(low, high), rng.choice(self.ops), rng.randint(low, high)
        )

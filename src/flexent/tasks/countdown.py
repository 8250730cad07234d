"""Countdown (the TinyZero task): reach a target with the given numbers and + - * /.

Generator: :class:`CountdownTask` draws numbers, combines all of them in a random order with
random operations (subtraction ordered to stay non-negative, division only when exact) and
keeps the result as the target when it lies in ``[1, max_target]``; the expression it built
is stored as a known solution, so every problem is solvable.

Verifier: :func:`verify_countdown` parses the answer with ``ast`` and evaluates the tree itself
with ``fractions.Fraction`` (never ``eval``). Allowed: ASCII integer literals, binary ``+ - * /``
and parentheses. Rejected: any other character (unicode digits included), ``**``/``^``,
unary ``-``/``+`` (negation is not a Countdown operation; write ``b - a``), decimals, names,
calls. Each given number may be used at most once (``exactly_once=True``: exactly once).
Caps: ``max_chars`` on the expression and ``max_magnitude`` on every intermediate numerator
and denominator. A trailing ``= <number>`` (``"(3 + 5) * 2 = 16"``) is ignored; the left side
is what counts.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from flexent.tasks import ProceduralTask

PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
    "arithmetic operations (+, -, *, /) and each number can only be used once. Show your work "
    "in <think> </think> tags. And return the final answer in <answer> </answer> tags, for "
    "example <answer> (1 + 2) / 3 </answer>."
)
_ALLOWED_CHARS = re.compile(r"[0-9+\-*/() \t]+")
_TRAILING_EQUALS = re.compile(r"^([^=]*)=\s*-?\d+(?:\.\d+)?\s*$")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass(frozen=True)
class CountdownProblem:
    numbers: tuple[int, ...]
    target: int
    solution: str

    @property
    def key(self) -> str:
        """Content key (sorted numbers and target): equal problems share a key and a split."""
        return ",".join(map(str, sorted(self.numbers))) + f"->{self.target}"

    def prompt(self) -> str:
        return PROMPT.format(numbers=list(self.numbers), target=self.target)

    def row(self) -> dict[str, Any]:
        """A dataset row: the columns the ``countdown`` reward reads, plus the solution."""
        return {
            "prompt": self.prompt(),
            "answer": str(self.target),
            "numbers": list(self.numbers),
            "target": self.target,
            "solution": self.solution,
            "task": "countdown",
        }


class CountdownTask(ProceduralTask["CountdownProblem"]):
    """Solvable countdown problems, deterministic from ``seed``.

    >>> task = CountdownTask(n_numbers=3, max_number=20, seed=0)
    >>> p = task.problem(0)
    >>> verify_countdown(p.solution, p.numbers, p.target, exactly_once=True)
    (True, 'correct')
    >>> task.problem(0) == CountdownTask(n_numbers=3, max_number=20, seed=0).problem(0)
    True
    """

    def __init__(
        self, n_numbers: int = 4, max_number: int = 100, seed: int = 0, *, max_target: int = 100
    ) -> None:
        if n_numbers < 2:
            raise ValueError(f"CountdownTask: n_numbers must be >= 2, got {n_numbers!r}")
        if max_number < 1 or max_target < 1:
            raise ValueError(
                f"CountdownTask: max_number and max_target must be >= 1, got "
                f"{max_number!r}, {max_target!r}"
            )
        self.n_numbers, self.max_number, self.seed = n_numbers, max_number, seed
        self.max_target = max_target

    def problem(self, index: int) -> CountdownProblem:
        """Problem ``index``; depends only on ``(seed, index)`` and the task parameters."""
        rng = random.Random(f"countdown:{self.seed}:{index}")
        for _ in range(10_000):
            numbers = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
            value, expr = _random_expression(numbers, rng)
            if value.denominator == 1 and 1 <= value <= self.max_target:
                return CountdownProblem(tuple(numbers), int(value), expr)
        raise RuntimeError(f"CountdownTask: no problem with target <= {self.max_target} found")


def _random_expression(numbers: Sequence[int], rng: random.Random) -> tuple[Fraction, str]:
    items = [(Fraction(x), str(x)) for x in numbers]
    while len(items) > 1:
        (a, ea), (b, eb) = (
            items.pop(rng.randrange(len(items))),
            items.pop(rng.randrange(len(items))),
        )
        op = rng.choice("+-*/")
        if op == "-" and a < b:
            (a, ea), (b, eb) = (b, eb), (a, ea)
        if op == "/" and (b == 0 or (a / b).denominator != 1):
            op = "+"
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a}[op]
        items.append((value, f"({ea} {op} {eb})"))
    value, expr = items[0]
    return value, expr[1:-1] if expr.startswith("(") else expr


def verify_countdown(
    expression: str,
    numbers: Sequence[int],
    target: int,
    *,
    exactly_once: bool = False,
    max_chars: int = 200,
    max_magnitude: int = 10**12,
) -> tuple[bool, str]:
    """``(correct, reason)`` for an answer expression; never raises on any string.

    >>> verify_countdown("(25 - 7) * 3 + 50", [3, 7, 25, 50], 104)
    (True, 'correct')
    >>> verify_countdown("25 * 25", [3, 7, 25, 50], 625)
    (False, 'number_reused')
    >>> verify_countdown("__import__('os')", [1, 2], 3)
    (False, 'invalid_characters')
    """
    if len(expression) > max_chars:
        return False, "too_long"
    m = _TRAILING_EQUALS.match(expression)
    expr = (m.group(1) if m else expression).strip()
    if not expr or not _ALLOWED_CHARS.fullmatch(expr):
        return False, "invalid_characters"
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False, "syntax_error"
    literals: list[int] = []
    bad = _check_tree(tree.body, literals)
    if bad:
        return False, bad
    used, given = Counter(literals), Counter(int(x) for x in numbers)
    if any(x not in given for x in used):
        return False, "unknown_number"
    if any(used[x] > given[x] for x in used):
        return False, "number_reused"
    if exactly_once and used != given:
        return False, "number_unused"
    try:
        value = _evaluate(tree.body, max_magnitude)
    except ZeroDivisionError:
        return False, "division_by_zero"
    except OverflowError:
        return False, "too_large"
    return (True, "correct") if value == target else (False, "wrong_value")


def _check_tree(node: ast.AST, literals: list[int]) -> str | None:
    """Why the tree is not a plain ``+ - * /`` expression over integers, or ``None``."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPS:
            return "operator_not_allowed"
        return _check_tree(node.left, literals) or _check_tree(node.right, literals)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        literals.append(node.value)
        return None
    if isinstance(node, ast.UnaryOp):
        return "unary_operator"
    return "not_allowed"


def _evaluate(node: ast.AST, max_magnitude: int) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    assert isinstance(node, ast.BinOp)
    a, b = _evaluate(node.left, max_magnitude), _evaluate(node.right, max_magnitude)
    op = _OPS[type(node.op)]
    value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
    if abs(value.numerator) > max_magnitude or value.denominator > max_magnitude:
        raise OverflowError
    return value

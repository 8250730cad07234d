"""``math``: final-answer check with math-verify, under a hard per-item timeout.

Pipeline for one completion (all string work happens in the caller; only the symbolic check
runs under the timeout):

1. Text: the completion (last assistant message for chat), cut to its last ``max_chars``
   characters (answers come at the end).
2. Prediction: the last ``\\boxed{}`` (nested braces handled); optionally the last number when
   there is no box (``number_fallback=True``). None -> score 0, ``info["reason"] = "no_answer"``.
3. Gold: ``example[answer_key]`` normalised (GSM8K ``#### 1,234`` -> ``1234``, a MATH solution
   -> its last ``\\boxed{}``); thousands separators dropped.
4. Equal strings score 1 at once.
5. Cheap string checks before any parsing (score 0): ``reason="not_math"`` for Python code
   words (``lambda``, ``import``, ``__``, ...: math-verify would otherwise pick a number out of
   ``(lambda: 12)()``), ``reason="too_complex"`` for bracket nesting deeper than
   ``max_nesting``, exponent chains longer than ``max_power_depth`` (``9^{9^{9}}``), integer
   exponents longer than ``max_exponent_digits`` digits, or a factorial or binomial of an
   integer above ``max_factorial`` (``300000!``; :func:`answer_complexity`); a limit
   is raised to the gold answer's own value when the gold needs more. Such answers would
   otherwise spend the whole timeout in sympy.
6. Otherwise math-verify checks ``verify(parse(gold), parse(pred))`` (gold first: it is the
   reference) with both wrapped in ``$...$`` (bare LaTeX parses to nothing otherwise). A
   percentage also counts as its value over 100, so ``50\\%`` and ``0.5`` match (math-verify
   alone reads ``50\\%`` as 50).

math-verify's own timeouts use ``SIGALRM``, which fails outside the main thread, so they are
switched off (``parsing_timeout=None``, ``timeout_seconds=None``) and the whole check runs
in a killable worker process (:func:`flexent.rewards.timeout.run_with_timeout`). Timeouts and
errors score 0 with ``info["error"]`` (a timeout also has ``info["reason"] = "timeout"``); an
unparseable gold answer scores ``None`` (not scorable). Called by TRL with a ``log_metric``
keyword, the reward logs ``rewards/<name>/timeouts``: the fraction of the batch's completions
whose check was killed at the timeout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from flexent.rewards.base import Reward, RewardResult, completion_text, require
from flexent.rewards.extract import (
    answer_line,
    last_boxed,
    last_number,
    normalize_gold,
    strip_thousands,
)
from flexent.rewards.registry import register_reward
from flexent.rewards.timeout import CheckTimeout, WorkerPool, default_pool, run_with_timeout

# Python code words that are no LaTeX math (``\lambda`` is: a backslash before the word).
_CODE = re.compile(r"__|(?<![\\A-Za-z])(?:lambda|import|exec|eval|def|return)(?![A-Za-z])")
_OPENERS, _CLOSERS = "({[", ")}]"


class Complexity(NamedTuple):
    """What :func:`answer_complexity` measures of an answer string."""

    nesting: int  # deepest bracket nesting, ( [ { counted alike
    power_depth: int  # most ^ (or **) in one exponent chain: x^2 -> 1, 9^{9^{9}} -> 2
    exponent_digits: int  # longest integer literal inside an exponent: 2^{2023} -> 4
    factorial: int = 0  # largest integer under ! or \binom / \choose: 300000! -> 300000


# An integer under a factorial (``300000!``, ``(200000)!``; not ``!=``) or a binomial's top
# (``\binom{200000}{100000}``, ``\dbinom``, ``\tbinom``, ``200000 \choose 100000``).
_FACTORIAL = re.compile(r"(\d+)[\s)}\]]*!(?!=)")
_BINOMIAL = re.compile(r"\\[dt]?binom\s*\{\s*(\d+)|(\d+)\s*\\choose(?![A-Za-z])")


def factorial_size(s: str) -> int:
    """The largest integer whose factorial or binomial ``s`` asks for (sympy computes them
    exactly: ``\\binom{200000}{100000}`` took 1.7-5 s in math-verify, ``300000!`` 0.5-1.2 s).
    Integers of more than 12 digits count as 10**12.

    >>> factorial_size(r"\\binom{200000}{100000}"), factorial_size("300000!"), factorial_size("5! = 120")
    (200000, 300000, 5)
    >>> factorial_size("x != 3")
    0
    """
    sizes = [
        int(d) if len(d) <= 12 else 10**12
        for m in (*_FACTORIAL.finditer(s), *_BINOMIAL.finditer(s))
        for d in m.groups()
        if d
    ]
    return max(sizes, default=0)


def answer_complexity(s: str) -> Complexity:
    """Nesting, exponent-chain depth, exponent size and factorial size of a LaTeX answer;
    linear scans.

    Pure string work, so hostile answers are rejected before any parser sees them. An exponent
    is the operand after ``^`` / ``**``: a bracket group, a single letter, a number or a
    command; a ``^`` whose base is itself in an exponent (``9^{9^{9}}``, ``9^9^9``,
    ``9^(9^(9))``, ``e^{\\frac{1}{x^2}}``) makes the chain one longer.

    >>> answer_complexity(r"\\frac{\\sqrt{3}}{2}")
    Complexity(nesting=2, power_depth=0, exponent_digits=0, factorial=0)
    >>> answer_complexity(r"x^2+y^2")[:3], answer_complexity(r"9^{9^{9}}")[1:]
    ((0, 1, 1), (2, 1, 0))
    """
    depth = max_depth = max_power = exp_digits = 0
    level = 0  # exponent level of the current position
    atom: int | None = None  # level of the last complete operand (the base of a following ^)
    pending: int | None = None  # the next operand is an exponent at this level
    stack: list[tuple[int, int | None]] = []  # per open bracket: (outer level, exponent level)
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in _OPENERS:
            depth += 1
            max_depth = max(max_depth, depth)
            stack.append((level, pending))
            if pending is not None:
                level = pending
            atom = pending = None
            i += 1
        elif c in _CLOSERS:
            depth = max(depth - 1, 0)
            if stack:
                level, group_exponent = stack.pop()
                atom = level if group_exponent is None else group_exponent
                j = _skip_spaces(s, i + 1)
                if group_exponent is not None and j < n and s[j] in "{[":
                    pending = group_exponent  # \frac{a}{b} after ^: both groups are exponent
            i += 1
        elif c == "^" or s.startswith("**", i):
            base = level if atom is None else atom
            pending = base + 1
            max_power = max(max_power, pending)
            atom = None
            i += 1 if c == "^" else 2
        elif c.isdigit():
            j = i
            while j < n and s[j].isdigit():
                j += 1
            here = level if pending is None else pending
            if here > 0 and not (i > 0 and s[i - 1] == "."):
                exp_digits = max(exp_digits, j - i)
            atom, pending = here, None
            i = j
        elif c == "\\":
            j = i + 1
            while j < n and s[j].isalpha():
                j += 1
            if j == i + 1:  # \{ \, ...: read the escaped character as itself
                i = j
                continue
            k = _skip_spaces(s, j)
            if not (k < n and s[k] in _OPENERS):  # \pi: an operand; \frac{, \left(: not yet
                atom, pending = (level if pending is None else pending), None
            i = j
        elif c.isalpha():
            atom, pending = (level if pending is None else pending), None
            i += 1
        elif c.isspace():
            i += 1
        else:  # an operator or punctuation: no operand before the next ^
            if c not in "+-":  # 10^-5: a sign keeps the exponent pending
                pending = None
            atom = None
            i += 1
    return Complexity(max_depth, max_power, exp_digits, factorial_size(s))


def _skip_spaces(s: str, i: int) -> int:
    while i < len(s) and s[i].isspace():
        i += 1
    return i


def _wrap(s: str) -> str:
    return s if ("$" in s or "\\(" in s or "\\[" in s) else f"${s}$"


def _forms(s: str) -> list[str]:
    """``s`` plus, for a percentage ``x\\%``, the fraction ``x/100``."""
    stripped = s.strip().removesuffix("$").strip()
    for suffix in ("\\%", "%"):
        if stripped.endswith(suffix):
            value = stripped[: -len(suffix)].strip()
            return [s, f"\\frac{{{value}}}{{100}}"]
    return [s]


def check_answer(gold: str, pred: str) -> bool | None:
    """math-verify equivalence of two bare answers; ``None`` when the gold does not parse.

    Module-level so the timeout worker can import it by name.
    """
    from math_verify import parse, verify

    # We disable math-verify's signal timeouts on purpose (ours is outside); silence the
    # warning it logs on every call about that.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    golds = [g for g in (parse(_wrap(f), parsing_timeout=None) for f in _forms(gold)) if g]
    if not golds:
        return None
    for form in _forms(pred):
        parsed = parse(_wrap(form), parsing_timeout=None)
        if parsed and any(verify(g, parsed, timeout_seconds=None) for g in golds):
            return True
    return False


def worker_warmup() -> None:
    """Run each kind of check once so sympy's lazy first-use cost is not charged to an item."""
    for gold, pred in (("\\frac{3}{4}", "0.75"), ("50\\%", "0.5"), ("(3, \\frac{\\pi}{2})", "x^2")):
        check_answer(gold, pred)


@register_reward("math")
class MathReward(Reward):
    """1.0 when the final answer matches the gold answer, else 0.0.

    Args:
        timeout: seconds allowed for one symbolic check; a hard limit, enforced by killing a
            worker process (:mod:`flexent.rewards.timeout`).
        number_fallback: use the last number when the completion has no ``\\boxed{}``.
        answer_line: read the text after the last ``Answer:`` on its line first (DAPO's prompt
            format, as verl's ``math_dapo``), then the last ``\\boxed{}``.
        answer_key: the gold-answer column.
        max_chars: only the last ``max_chars`` characters of a completion are read.
        max_answer_chars: longer extracted answers score 0 without a symbolic check.
        max_nesting: deeper bracket nesting in the answer scores 0 (``too_complex``).
        max_power_depth: longer exponent chains (``9^{9^{9}}`` has 2) score 0.
        max_exponent_digits: longer integer exponents (``9^{9999999}``) score 0.
        max_factorial: a factorial or binomial of a larger integer (``300000!``,
            ``\\binom{200000}{100000}``) scores 0.
        pool: worker pool to use (default: one shared per process).

    The four complexity limits are raised to the gold answer's own values where it needs
    more, so an answer is never rejected for being as complex as the gold.

    >>> reward = MathReward()
    >>> reward([r"... so the answer is $\\boxed{12}$.", "I give up"], answer=["#### 12", "12"])
    [1.0, 0.0]
    >>> reward.score("The total is 12 apples.", {"answer": "12"}).info["reason"]
    'no_answer'
    >>> MathReward(number_fallback=True).score("The total is 12 apples.", {"answer": "12"}).score
    1.0
    """

    name = "math"
    columns: tuple[str, ...] = ("answer",)

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        number_fallback: bool = False,
        answer_line: bool = False,
        answer_key: str = "answer",
        max_chars: int = 20_000,
        max_answer_chars: int = 1_000,
        max_nesting: int = 10,
        max_power_depth: int = 1,
        max_exponent_digits: int = 6,
        max_factorial: int = 10_000,
        pool: WorkerPool | None = None,
    ) -> None:
        super().__init__()
        if timeout <= 0:
            raise ValueError(f"math reward: timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = timeout
        self.number_fallback = number_fallback
        self.answer_line = answer_line
        self.answer_key = answer_key
        self.columns = (answer_key,)
        self.max_chars = max_chars
        self.max_answer_chars = max_answer_chars
        self.limits = Complexity(max_nesting, max_power_depth, max_exponent_digits, max_factorial)
        self.pool = pool

    def warm_up(self) -> None:
        """Start this reward's checker process in the background now (imports and a first
        check, seconds), so that the first batch does not wait for it: call it at start-up."""
        pool = self.pool if self.pool is not None else default_pool(preload=(__name__,))
        pool.prestart()

    def extract(self, completion: Any) -> str | None:
        """The predicted final answer of a completion, or ``None``."""
        text = completion_text(completion)[-self.max_chars :]
        answer = answer_line(text) if self.answer_line else None
        if answer is None:
            answer = last_boxed(text)
        if answer is None and self.number_fallback:
            answer = last_number(text)
        return None if answer is None else strip_thousands(answer)

    def score(self, completion: Any, example: Mapping[str, Any]) -> RewardResult:
        gold = normalize_gold(str(require(example, self.answer_key, self.name)))
        gold = strip_thousands(gold)
        pred = self.extract(completion)
        info: dict[str, Any] = {"gold": gold, "extracted": pred}
        if not gold:
            return RewardResult(None, {**info, "error": "empty gold answer"})
        if pred is None:
            return RewardResult(0.0, {**info, "reason": "no_answer"})
        if len(pred) > self.max_answer_chars:
            return RewardResult(0.0, {**info, "reason": "answer_too_long"})
        if pred.strip() == gold:
            return RewardResult(1.0, {**info, "reason": "exact_match"})
        if _CODE.search(pred):
            return RewardResult(0.0, {**info, "reason": "not_math"})
        complexity = answer_complexity(pred)
        limits = [max(a, b) for a, b in zip(self.limits, answer_complexity(gold), strict=True)]
        if any(c > limit for c, limit in zip(complexity, limits, strict=True)):
            info["complexity"] = complexity._asdict()
            return RewardResult(0.0, {**info, "reason": "too_complex"})
        try:
            # the shared pool's workers import this module (and math-verify, worker_warmup)
            pool = self.pool if self.pool is not None else default_pool(preload=(__name__,))
            ok = run_with_timeout(check_answer, (gold, pred), timeout=self.timeout, pool=pool)
        except CheckTimeout as e:
            return RewardResult(0.0, {**info, "reason": "timeout", "error": f"CheckTimeout: {e}"})
        except Exception as e:  # WorkerError (math-verify raised), WorkerDied
            return RewardResult(0.0, {**info, "error": f"{type(e).__name__}: {e}"})
        if ok is None:
            return RewardResult(None, {**info, "error": "gold answer does not parse"})
        return RewardResult(1.0 if ok else 0.0, {**info, "reason": "verified" if ok else "wrong"})

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        """TRL form; also logs the fraction of timeouts through TRL's ``log_metric``."""
        results = self.score_batch(completions, **columns)
        log_metric = columns.get("log_metric")
        if callable(log_metric) and results:
            timeouts = sum(r.info.get("reason") == "timeout" for r in results)
            log_metric(f"rewards/{self.__name__}/timeouts", timeouts / len(results))
        return [r.score for r in results]

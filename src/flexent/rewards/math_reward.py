"""``math``: final-answer check with math-verify, under a hard per-item timeout.

Pipeline for one completion (all string work happens in the caller; only the symbolic check
runs under the timeout):

1. Text: the completion (last assistant message for chat), cut to its last ``max_chars``
   characters (answers come at the end).
2. Prediction: the last ``\\boxed{}`` (nested braces handled); optionally the last number when
   there is no box (``number_fallback=True``). None -> score 0, ``info["reason"] = "no_answer"``.
3. Gold: ``example[answer_key]`` normalised (GSM8K ``#### 1,234`` -> ``1234``, a MATH solution
   -> its last ``\\boxed{}``); thousands separators dropped.
4. Equal strings score 1 at once; otherwise math-verify checks ``verify(parse(gold),
   parse(pred))`` (gold first: it is the reference) with both wrapped in ``$...$`` (bare LaTeX
   parses to nothing otherwise). A percentage also counts as its value over 100, so ``50\\%``
   and ``0.5`` match (math-verify alone reads ``50\\%`` as 50).

math-verify's own timeouts use ``SIGALRM``, which fails outside the main thread, so they are
switched off (``parsing_timeout=None``, ``timeout_seconds=None``) and the whole check runs
in a killable worker process (:func:`flexent.rewards.timeout.run_with_timeout`). Timeouts and errors score 0 with
``info["error"]``; an unparseable gold answer scores ``None`` (not scorable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flexent.rewards.base import Reward, RewardResult, completion_text, require
from flexent.rewards.extract import last_boxed, last_number, normalize_gold, strip_thousands
from flexent.rewards.registry import register_reward
from flexent.rewards.timeout import WorkerPool, run_with_timeout


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
        answer_key: the gold-answer column.
        max_chars: only the last ``max_chars`` characters of a completion are read.
        max_answer_chars: longer extracted answers score 0 without a symbolic check.
        pool: worker pool to use (default: one shared per process).

    >>> reward = MathReward()
    >>> reward([r"... so the answer is $\\boxed{12}$.", "I give up"], answer=["#### 12", "12"])
    [1.0, 0.0]
    >>> reward.score("The total is 12 apples.", {"answer": "12"}).info["reason"]
    'no_answer'
    >>> MathReward(number_fallback=True).score("The total is 12 apples.", {"answer": "12"}).score
    1.0
    """

    name = "math"

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        number_fallback: bool = False,
        answer_key: str = "answer",
        max_chars: int = 20_000,
        max_answer_chars: int = 1_000,
        pool: WorkerPool | None = None,
    ) -> None:
        super().__init__()
        if timeout <= 0:
            raise ValueError(f"math reward: timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = timeout
        self.number_fallback = number_fallback
        self.answer_key = answer_key
        self.max_chars = max_chars
        self.max_answer_chars = max_answer_chars
        self.pool = pool

    def extract(self, completion: Any) -> str | None:
        """The predicted final answer of a completion, or ``None``."""
        text = completion_text(completion)[-self.max_chars :]
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
        try:
            ok = run_with_timeout(check_answer, (gold, pred), timeout=self.timeout, pool=self.pool)
        except Exception as e:  # CheckTimeout, WorkerError (math-verify raised), WorkerDied
            return RewardResult(0.0, {**info, "error": f"{type(e).__name__}: {e}"})
        if ok is None:
            return RewardResult(None, {**info, "error": "gold answer does not parse"})
        return RewardResult(1.0 if ok else 0.0, {**info, "reason": "verified" if ok else "wrong"})

"""Hostile model output: every reward is linear in the input, and complex math is capped.

* Extractors on tricky strings (hand-derived expectations), plus differential tests against
  the previous (quadratic) implementations kept here as references on short random strings.
* Megabyte inputs of unclosed tags/boxes: these hung before (quadratic; 8 MB never finished).
  There is no time assertion: the sizes make a quadratic algorithm run for hours, so a
  regression shows up as a hung test, while the linear code takes milliseconds.
* math reward: answers too deep/too big to parse (``too_complex``) or that are Python code
  (``not_math``) score 0 without reaching the checker; the timeout count is logged.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from flexent.rewards import get_reward
from flexent.rewards.extract import answer_tag, last_boxed, last_number
from flexent.rewards.format import think_answer
from flexent.rewards.math_reward import Complexity, MathReward, answer_complexity
from flexent.rewards.timeout import CheckTimeout, WorkerPool

# --- references: the previous implementations -------------------------------------------------
_OLD_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OLD_THINK_ANSWER = re.compile(r"\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)


def old_answer_tag(text: str) -> str | None:
    matches = _OLD_ANSWER_TAG.findall(text)
    return matches[-1].strip() if matches else None


def old_think_answer(text: str) -> str | None:
    m = _OLD_THINK_ANSWER.fullmatch(text)
    return m.group(1) if m else None


def old_last_boxed(text: str) -> str | None:
    found: str | None = None
    pos = 0
    while True:
        starts = [(i, c) for c in ("\\boxed", "\\fbox") if (i := text.find(c, pos)) >= 0]
        if not starts:
            return found
        start, cmd = min(starts)
        i = start + len(cmd)
        content: str | None = None
        end = i
        if i < len(text) and text[i] == " ":
            m = re.match(r" +([^\s$]+)", text[i:])
            if m:
                content, end = m.group(1), i + m.end()
        elif i < len(text) and text[i] == "{":
            depth, end = 0, i + 1
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    content, end = text[i + 1 : j], j + 1
                    break
        if content is not None:
            found = content
        pos = max(end, i)


# --- answer tags ------------------------------------------------------------------------------
ANSWER_TAGS = [
    ("<answer>a<answer>b</answer>", "a<answer>b"),  # the first open pairs with the first close
    ("<answer>a</answer></answer>", "a"),  # a stray close is ignored
    ("<answer> 1 </answer> so <answer>2</answer>", "2"),  # the last pair wins
    ("<answer>1</answer><answer>2", "1"),  # an unclosed last tag is ignored
    ("<answer>a</answer><answer>b<answer>c</answer>", "b<answer>c"),
    ("<answer>a</answer>b</answer>", "a"),
    ("<answer><answer></answer>", "<answer>"),
    ("</answer><answer>3</answer>", "3"),
    ("<answer>\n(1 + 2)\n</answer>", "(1 + 2)"),  # spans lines, stripped
    ("<answer></answer>", ""),
    ("<answer>unclosed", None),
    ("</answer>", None),
    ("no tags", None),
]


@pytest.mark.parametrize(("text", "expected"), ANSWER_TAGS)
def test_answer_tag_table(text, expected):
    assert answer_tag(text) == expected


# --- boxes ------------------------------------------------------------------------------------
BOXES = [
    (r"\boxed{a} \fbox{b}", "b"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
    (r"\boxed{\boxed{1}}", r"\boxed{1}"),  # a box inside a complete box is not separate
    (r"\boxed{1} \boxed{2", "1"),  # unclosed last box: the previous complete one
    (r"\boxed{1 \boxed{2}", "2"),  # unclosed outer box: reading resumes after its {
    (r"\boxed{a} \boxed{b} \boxed{", "b"),
    (r"\boxed 5 and more", "5"),  # brace-less: up to the next whitespace
    (r"\boxed 5$ x", "5"),  # ... or $
    (r"\boxed  x", "x"),  # several spaces
    ("\\boxed \n5", None),  # a newline is not an argument
    (r"\boxed 5\boxed{6}", r"5\boxed{6}"),  # the brace-less argument swallows the next box
    (r"\fbox{\boxed{1}} \boxed 2", "2"),
    (r"\boxed{}", ""),
    (r"\boxed{a}}", "a"),
    (r"}{\boxed{x}", "x"),
    (r"\boxedx{1}", None),  # neither { nor space after the command
    ("\\boxed", None),
    ("no box", None),
]


@pytest.mark.parametrize(("text", "expected"), BOXES)
def test_last_boxed_table(text, expected):
    assert last_boxed(text) == expected


# --- format: <think>...</think><answer>...</answer> -------------------------------------------
THINK_ANSWER = [
    ("<think>a</think><answer>3</answer>", "3"),
    (" \n<think>a</think>\n <answer> 3 </answer>\n", " 3 "),
    ("<think>a</think><answer>3</answer> trailing", None),
    ("<answer>3</answer>", None),
    ("<think>a</think>x<answer>3</answer>", None),
    ("<think>a</think>b</think><answer>3</answer>", "3"),  # the second </think> is the one
    ("<think>a</think><answer>x</answer>y</answer>", "x</answer>y"),  # the close ends the text
    ("<think>a</think><answer>1</think><answer>2</answer>", "1</think><answer>2"),
    ("<think></think><answer></answer>", ""),
    ("<think>a</think><answer>", None),
]


@pytest.mark.parametrize(("text", "expected"), THINK_ANSWER)
def test_think_answer_table(text, expected):
    assert think_answer(text) == expected


# --- differential tests against the previous implementations ---------------------------------
def _random_texts(tokens: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(tokens, k=rng.randint(0, 12))) for _ in range(n)]


def test_tags_agree_with_the_regexes_on_random_strings():
    tokens = ["<answer>", "</answer>", "<think>", "</think>", "a", " ", "\n", "<"]
    for text in _random_texts(tokens, 4000, seed=0):
        assert answer_tag(text) == old_answer_tag(text), text
        assert think_answer(text) == old_think_answer(text), text
    # mostly well-formed: framed by <think> ... </answer>, so many of them match
    matched = 0
    for middle in _random_texts(["</think>", "<answer>", "</answer>", " ", "a"], 4000, seed=2):
        text = "<think>" + middle + "</answer>"
        assert think_answer(text) == old_think_answer(text), text
        matched += think_answer(text) is not None
    assert matched > 400  # the comparison covered matching cases too


def test_last_boxed_agrees_with_the_old_scan_on_random_strings():
    tokens = ["\\boxed", "\\fbox", "{", "}", " ", "x", "$", "\n", "1"]
    for text in _random_texts(tokens, 4000, seed=1):
        assert last_boxed(text) == old_last_boxed(text), text


# --- megabyte inputs that hung before ---------------------------------------------------------
N = 500_000  # "<answer>" * N is 4 MB; the regex needed ~10 s for 128 KB, quadratically more


def test_unclosed_answer_tags():
    assert answer_tag("<answer>" * N) is None
    # one close at the very end: the first open pairs with it (content of 4 MB)
    assert answer_tag("<answer>" * N + "x</answer>") == "<answer>" * (N - 1) + "x"


def test_countdown_reward_on_unclosed_tags():
    reward = get_reward("countdown")
    example = {"numbers": [4, 25], "target": 100}
    result = reward.score("<answer>" * N, example)
    assert (result.score, result.info["reason"]) == (0.0, "no_answer")
    # the only pair spans all the tags: far over the 200-character expression cap
    result = reward.score("<answer>" * N + "4 * 25</answer>", example)
    assert (result.score, result.info["reason"]) == (0.0, "too_long")
    result = reward.score("<answer>4 * 25</answer>" + "<answer>" * N, example)
    assert (result.score, result.info["reason"]) == (1.0, "correct")


def test_unclosed_boxes():
    m = 300_000  # "\\boxed{" * m is 2.1 MB; each unclosed box made the old scan read to the end
    assert last_boxed("\\boxed{" * m) is None
    assert last_boxed("\\boxed{" * m + "7}") == "7"  # the one } closes the last box only
    # all boxes closed, nested: the outermost is the answer, the inner ones are skipped
    assert last_boxed("\\boxed{" * m + "}" * m) == "\\boxed{" * (m - 1) + "}" * (m - 1)
    assert last_boxed("\\fbox" * 1_000_000) is None  # 5 MB of commands without arguments
    # brace-less form: each argument is the next command; the old code copied the rest of the
    # text for every box
    assert last_boxed("\\boxed " * N) == "\\boxed"


def test_last_number_and_last_line_on_megabytes():
    assert last_number("1," * 2_000_000) == "1"  # "1,1" is no thousands group
    assert last_number("-" * 4_000_000 + "5") == "-5"
    reward = get_reward("countdown", last_line_fallback=True)
    text = "(7 - 3) * 25" + "\n \n" * 1_000_000
    assert reward.score(text, {"numbers": [3, 7, 25], "target": 100}).score == 1.0


def test_format_styles_on_megabytes():
    big = 10**8  # lift the format reward's length cap to reach the extractors
    think = get_reward("format", style="think_answer", max_chars=big)
    m = 250_000  # 4 MB of </think><answer> pairs: the regex tried every pair to the end
    assert think(["<think>" + "</think><answer>" * m + "x"]) == [0.0]
    assert think(["<think>" + "</think><answer>" * m + "</answer>"]) == [1.0]
    answer = get_reward("format", style="answer", max_chars=big)
    assert answer(["<answer>" * N]) == [0.0]
    boxed = get_reward("format", style="boxed", max_chars=big)
    assert boxed(["\\boxed{" * 300_000]) == [0.0]


# --- arithmetic: exponents in Fraction syntax --------------------------------------------------
ARITH_EXPONENTS = [
    (r"\boxed{1e999999999}", "1", (0.0, "not_a_number")),  # would build 10**999999999
    (r"\boxed{1e-999999999}", "1", (0.0, "not_a_number")),
    (r"\boxed{1e1_000_000}", "1", (0.0, "not_a_number")),
    ("<answer>1e3</answer>", "1000", (1.0, "correct")),  # small exponents still work
    (r"\boxed{2.5E-1}", "0.25", (1.0, "correct")),
]


@pytest.mark.parametrize(("completion", "gold", "expected"), ARITH_EXPONENTS)
def test_arithmetic_exponents(completion, gold, expected):
    result = get_reward("arithmetic").score(completion, {"answer": gold})
    assert (result.score, result.info["reason"]) == expected


# --- math: complexity caps before parsing -------------------------------------------------------
# (answer, (nesting, power_depth, exponent_digits)), worked out by hand
COMPLEXITY = [
    (r"\frac{\sqrt{3}}{2}", (2, 0, 0)),
    (r"(3, \frac{\pi}{2})", (2, 0, 0)),
    (r"2^{10}", (1, 1, 2)),
    (r"x^2+y^2", (0, 1, 1)),  # two powers, not a chain
    (r"e^{i\pi}", (1, 1, 0)),
    (r"9^{9^{9}}", (2, 2, 1)),
    (r"9^9^9", (0, 2, 1)),
    (r"9^(9^(9))", (2, 2, 1)),
    (r"9**9**9", (0, 2, 1)),
    (r"e^{\frac{1}{x^2}}", (2, 2, 1)),
    (r"e^\frac{1}{x^2}", (1, 2, 1)),  # both groups of \frac are in the exponent
    (r"e^\pi x^2", (0, 1, 1)),  # x^2 is a factor, not in the exponent
    (r"(x^2)^3", (1, 1, 1)),  # a power of a power is no tower
    (r"{9^{9}}^{9}", (2, 1, 1)),
    (r"\left(x^2\right)^3", (1, 1, 1)),
    (r"10^{-12}", (1, 1, 2)),
    (r"9^{9999999}", (1, 1, 7)),
    (r"e^{0.1234567}", (1, 1, 1)),  # decimals are no integer exponent
    ("(" * 100 + "1" + ")" * 100, (100, 0, 0)),
    # (..., factorial): the largest integer under ! or a binomial's top; != is no factorial
    (r"\binom{200000}{100000}", (1, 0, 0, 200000)),
    (r"\dbinom{ 12 }{5}", (1, 0, 0, 12)),
    (r"200000 \choose 100000", (0, 0, 0, 200000)),
    (r"300000!", (0, 0, 0, 300000)),
    (r"(200000)!", (1, 0, 0, 200000)),
    (r"3! + 5!", (0, 0, 0, 5)),
    (r"x != 300000", (0, 0, 0, 0)),
]


@pytest.mark.parametrize(("answer", "expected"), COMPLEXITY)
def test_answer_complexity(answer, expected):
    assert answer_complexity(answer) == Complexity(*expected)


class StubPool(WorkerPool):
    """Stands in for the worker processes: records the checks asked for; never starts one."""

    def __init__(self, slow: str = "") -> None:
        super().__init__(max_workers=1)
        self.calls: list[tuple[Any, ...]] = []
        self.slow = slow

    def run(self, fn: Any, args: Any, *, timeout: float) -> Any:
        self.calls.append(tuple(args))
        if self.slow and args[1] == self.slow:
            raise CheckTimeout(f"timed out after {timeout} s (worker killed)")
        return True


FRAC_60 = "\\frac{" * 60 + "1" + "}{2}" * 60
HOSTILE_MATH = [
    (FRAC_60, "too_complex"),  # nesting 60 (20 levels already take > 5 s in math-verify)
    ("(" * 100 + "1" + ")" * 100, "too_complex"),
    (r"9^{9^{9}}", "too_complex"),  # sympy would build 9**387420489
    (r"9^9^9", "too_complex"),
    (r"9**9**9", "too_complex"),
    (r"9^{9999999}", "too_complex"),  # a 7-digit exponent
    (r"\binom{200000}{100000}", "too_complex"),  # sympy computed it exactly: 1.7-5 s
    (r"300000!", "too_complex"),  # 0.5-1.2 s
    (r"(200000)!", "too_complex"),
    (r"(lambda: 12)()", "not_math"),  # math-verify would read the 12
    (r"__import__('os').getpid()", "not_math"),
    (r"x^{__class__}", "not_math"),
]


@pytest.mark.parametrize(("answer", "reason"), HOSTILE_MATH)
def test_hostile_math_answers_never_reach_the_checker(answer, reason):
    pool = StubPool()
    result = MathReward(pool=pool).score(rf"\boxed{{{answer}}}", {"answer": "12"})
    assert (result.score, result.info["reason"]) == (0.0, reason)
    assert pool.calls == []


ORDINARY_MATH = [
    r"\frac{\sqrt{3}}{2}",
    r"(3, \frac{\pi}{2})",
    r"2^{10}",
    r"x^2+y^2",
    r"e^{i\pi}",
    r"\lambda",  # LaTeX's \lambda is not Python's lambda
    r"\text{undefined}",  # "def" inside a word
    r"\left[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} \right]",
    r"2^{2023}",
    r"2023!",
    r"\binom{10}{3}",
]


@pytest.mark.parametrize("answer", ORDINARY_MATH)
def test_ordinary_math_answers_reach_the_checker(answer):
    pool = StubPool()
    result = MathReward(pool=pool).score(rf"\boxed{{{answer}}}", {"answer": "z"})
    assert (result.score, result.info["reason"]) == (1.0, "verified")  # the stub says equal
    assert pool.calls == [("z", answer)]


def test_limits_rise_to_the_gold_answers_complexity():
    pool = StubPool()
    reward = MathReward(pool=pool)
    # the gold is itself a 2-deep chain, so a 2-deep prediction is checked
    assert reward.score(r"\boxed{e^{-x^2}}", {"answer": r"e^{-x^{2}}"}).score == 1.0
    assert reward.score(r"\boxed{e^{-x^2}}", {"answer": r"e^{-x}"}).info["reason"] == "too_complex"
    assert pool.calls == [(r"e^{-x^{2}}", r"e^{-x^2}")]
    # the limits are parameters
    lenient = MathReward(pool=pool, max_nesting=100, max_power_depth=3, max_exponent_digits=9)
    assert lenient.score(r"\boxed{9^{9^{9}}}", {"answer": "1"}).info["reason"] == "verified"
    # a gold that is itself a large factorial raises the factorial limit to its own
    assert reward.score(r"\boxed{20000!}", {"answer": "20000!"}).info["reason"] == "exact_match"
    assert reward.score(r"\boxed{(20000)!}", {"answer": "20000!"}).info["reason"] == "verified"
    strict = MathReward(pool=pool, max_factorial=10)
    assert strict.score(r"\boxed{11!}", {"answer": "1"}).info["reason"] == "too_complex"


def test_trl_call_logs_the_timeout_fraction():
    reward = MathReward(pool=StubPool(slow="slow"))
    logged: list[tuple[str, float]] = []
    completions = [r"\boxed{slow}", r"\boxed{1}", r"\boxed{slow}", "no answer"]
    scores = reward(completions, answer=["1"] * 4, log_metric=lambda k, v: logged.append((k, v)))
    assert scores == [0.0, 1.0, 0.0, 0.0]
    assert logged == [("rewards/math/timeouts", 0.5)]  # 2 of the 4 completions timed out
    result = reward.score(r"\boxed{slow}", {"answer": "1"})
    assert result.info["reason"] == "timeout" and "CheckTimeout" in result.info["error"]
    # without log_metric (verl, evaluation) nothing is logged and nothing fails
    assert reward(completions, answer=["1"] * 4) == [0.0, 1.0, 0.0, 0.0]
    # the key follows the name TRL logs the reward under
    reward.__name__ = "math_strict"
    reward(completions[:1], answer=["1"], log_metric=lambda k, v: logged.append((k, v)))
    assert logged[-1] == ("rewards/math_strict/timeouts", 1.0)

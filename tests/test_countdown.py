"""countdown: verifier table (hostile inputs included), reward extraction, generator."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from flexent.rewards import get_reward
from flexent.tasks.countdown import CountdownTask, verify_countdown

N = [3, 7, 25, 50]
# expression, target, expected (ok, reason); values worked out by hand in the comments.
TABLE = [
    ("(7 - 3) * 25", 100, (True, "correct")),  # 4 * 25
    ("50 + 25 + 7 * 3", 96, (True, "correct")),  # 75 + 21
    ("(50 - 25) / (7 - 3)", Fraction(25, 4), (True, "correct")),  # exact fraction
    ("(7 - 3) * 25 = 100", 100, (True, "correct")),  # trailing "= N" ignored
    ("(7 - 3) * 25", 99, (False, "wrong_value")),
    ("25 + 25 + 50", 100, (False, "number_reused")),  # 25 given once
    ("100", 100, (False, "unknown_number")),
    ("4 * 25", 100, (False, "unknown_number")),
    ("50 / (7 - 7)", 1, (False, "number_reused")),  # reuse is caught before evaluating
    ("-3 + 7", 4, (False, "unary_operator")),  # negation is not a Countdown operation
    ("9**9**9", 1, (False, "operator_not_allowed")),  # ast never evaluates; Pow rejected
    ("2^999", 1, (False, "invalid_characters")),
    ("__import__('os').system('true')", 1, (False, "invalid_characters")),
    ("().__class__.__bases__", 1, (False, "invalid_characters")),
    ("٣ + ٧", 10, (False, "invalid_characters")),  # Arabic-Indic digits
    ("３ + ７", 10, (False, "invalid_characters")),  # fullwidth digits
    ("3.0 + 7", 10, (False, "invalid_characters")),
    ("3 +", 3, (False, "syntax_error")),
    ("", 3, (False, "invalid_characters")),
    ("1+" * 5_000 + "1", 1, (False, "too_long")),  # 10,001 characters
]


@pytest.mark.parametrize(("expr", "target", "expected"), TABLE)
def test_verifier_table(expr, target, expected):
    assert verify_countdown(expr, N, target) == expected


def test_division_by_zero_is_rejected():
    # 7 / (3 - 3): the numbers 7, 3, 3 are all given, the divisor is 0.
    assert verify_countdown("7 / (3 - 3)", [3, 3, 7], 1) == (False, "division_by_zero")


def test_exactly_once_option():
    assert verify_countdown("(7 - 3) * 25", N, 100) == (True, "correct")
    assert verify_countdown("(7 - 3) * 25", N, 100, exactly_once=True) == (False, "number_unused")
    # (50 / 25 + 3) * 7 = 35 uses all four
    assert verify_countdown("(50 / 25 + 3) * 7", N, 35, exactly_once=True) == (True, "correct")


def test_magnitude_and_nesting_caps():
    big = [99, 98, 97, 96, 95]
    expr = "99 * 98 * 97 * 96 * 95"  # 8,582,777,280 > 10**6
    assert verify_countdown(expr, big, 1, max_magnitude=10**6) == (False, "too_large")
    deep = "(" * 10_000 + "3" + ")" * 10_000
    ok, reason = verify_countdown(deep, [3], 3, max_chars=30_000)
    assert not ok and reason == "syntax_error"


REWARD_TABLE = [
    ("<think>4*25</think><answer>(7 - 3) * 25</answer>", 1.0),
    ("<answer>7 * 3</answer> then <answer>(7 - 3) * 25</answer>", 1.0),  # last tag wins
    (r"so \boxed{(7 - 3) * 25}", 1.0),  # boxed when there is no tag
    ("(7 - 3) * 25", 0.0),  # bare last line: only with last_line_fallback
    ("<answer>__import__('os')</answer>", 0.0),
    ("<answer>" + "9" * 10_000 + "</answer>", 0.0),
    ([{"role": "assistant", "content": "<answer>25 * (7 - 3)</answer>"}], 1.0),
    # tags pair left to right, first open with first close: "7 * 3<answer>(7 - 3) * 25"
    ("<answer>7 * 3<answer>(7 - 3) * 25</answer>", 0.0),
    ("<answer>(7 - 3) * 25</answer></answer>", 1.0),  # a stray close is ignored
    ("<answer>(7 - 3) * 25</answer><answer>7 * 3", 1.0),  # an unclosed last tag is ignored
]


@pytest.mark.parametrize(("completion", "expected"), REWARD_TABLE)
def test_reward_table(completion, expected):
    reward = get_reward("countdown")
    assert reward([completion], numbers=[N], target=[100]) == [expected]


def test_reward_last_line_fallback_and_bad_columns():
    reward = get_reward("countdown", last_line_fallback=True)
    assert reward.score("thinking...\n(7 - 3) * 25", {"numbers": N, "target": 100}).score == 1.0
    assert reward.score("<answer>1</answer>", {"numbers": N, "target": "x"}).score is None


def _reachable(numbers: list[int], target: int) -> bool:
    """Brute force, written independently of the generator: can some subset reach target?"""
    values = [Fraction(x) for x in numbers]

    def search(vals: list[Fraction]) -> bool:
        if any(v == target for v in vals):
            return True
        for i, j in itertools.permutations(range(len(vals)), 2):
            rest = [v for k, v in enumerate(vals) if k not in (i, j)]
            a, b = vals[i], vals[j]
            results = [a + b, a - b, a * b] + ([a / b] if b != 0 else [])
            if any(search([*rest, r]) for r in results):
                return True
        return False

    return search(values)


@pytest.mark.parametrize(("n_numbers", "max_number", "seed"), [(3, 20, 0), (4, 100, 1)])
def test_every_generated_problem_is_solvable(n_numbers, max_number, seed):
    task = CountdownTask(n_numbers=n_numbers, max_number=max_number, seed=seed)
    for p in task.generate(40):
        assert len(p.numbers) == n_numbers
        assert all(1 <= x <= max_number for x in p.numbers)
        assert 1 <= p.target <= 100
        assert verify_countdown(p.solution, p.numbers, p.target, exactly_once=True) == (
            True,
            "correct",
        )
    for p in task.generate(15):
        assert _reachable(list(p.numbers), p.target)


def test_generator_is_deterministic_and_splits_are_disjoint():
    a = CountdownTask(n_numbers=4, max_number=50, seed=7).generate(50)
    b = CountdownTask(n_numbers=4, max_number=50, seed=7).generate(50)
    c = CountdownTask(n_numbers=4, max_number=50, seed=8).generate(50)
    assert a == b
    assert a != c
    train = {p.key for s in (7, 8) for p in CountdownTask(4, 50, s).generate(200)}
    test = {p.key for s in (7, 8) for p in CountdownTask(4, 50, s).generate(40, split="test")}
    assert len(test) == 80 and not train & test


def test_generator_rejects_bad_parameters():
    with pytest.raises(ValueError, match="n_numbers"):
        CountdownTask(n_numbers=1)
    with pytest.raises(ValueError, match="split"):
        CountdownTask().generate(3, split="valid")


def test_generate_raises_when_the_task_has_too_few_problems():
    # numbers are always [1, 1] and targets must lie in [1, 2]: only 1+1 = 2 and 1*1 = 1/1 = 1
    # exist, so at most 2 distinct problems; asking for 5 must fail instead of looping forever.
    task = CountdownTask(n_numbers=2, max_number=1, max_target=2, seed=0)
    with pytest.raises(ValueError, match=r"found only [12] after"):
        task.generate(5, split="train", test_fraction=0.0)
    assert len(task.generate(1, split="train", test_fraction=0.0)) == 1

"""arithmetic and format rewards, arithmetic task, the reward registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexent.rewards import FunctionReward, Reward, get_reward, list_rewards
from flexent.tasks.arithmetic import ArithmeticTask
from flexent.tasks.countdown import CountdownTask

ARITH = [
    (r"12 * 114 = \boxed{1368}", "1368", 1.0),
    (r"\boxed{1,368}", "1368", 1.0),
    ("<answer>-42</answer>", "-42", 1.0),
    ("First 10, then 11, finally 12", "12", 1.0),  # last number
    ("12.0", "12", 1.0),
    (r"\boxed{1368} but later 5", "1368", 1.0),  # the box wins over later numbers
    (r"\boxed{1369}", "1368", 0.0),
    (r"\boxed{x}", "1368", 0.0),
    ("no digits at all", "3", 0.0),
    ("9" * 10_000, "3", 0.0),
]


@pytest.mark.parametrize(("completion", "gold", "expected"), ARITH)
def test_arithmetic_reward(completion, gold, expected):
    assert get_reward("arithmetic")([completion], answer=[gold]) == [expected]


def test_arithmetic_task_answers():
    task = ArithmeticTask(digits=3, seed=3)
    for p in task.generate(30):
        assert 100 <= p.a <= 999 and 100 <= p.b <= 999
        expected = {"+": p.a + p.b, "-": p.a - p.b, "*": p.a * p.b}[p.op]
        assert p.answer == expected
        assert get_reward("arithmetic").score(rf"\boxed{{{expected}}}", p.row()).score == 1.0
    assert task.generate(30) == ArithmeticTask(digits=3, seed=3).generate(30)
    with pytest.raises(ValueError, match="ops"):
        ArithmeticTask(ops=("/",))


FORMAT = [
    ("boxed", r"so \boxed{3}", 0.5),
    ("boxed", r"so \boxed{}", 0.0),
    ("boxed", r"so \boxed{3", 0.0),
    ("answer", "<answer>3</answer>", 0.5),
    ("answer", "<answer> </answer>", 0.0),
    ("think_answer", "<think>a</think>\n<answer>3</answer>", 0.5),
    ("think_answer", "<answer>3</answer>", 0.0),
    ("think_answer", "<think>a</think><answer>3</answer> trailing", 0.0),
]


@pytest.mark.parametrize(("style", "completion", "expected"), FORMAT)
def test_format_reward(style, completion, expected):
    assert get_reward("format", style=style, weight=0.5)([completion]) == [expected]


def test_registry_lists_and_rejects_unknown_names():
    assert list_rewards() == ["arithmetic", "countdown", "format", "math"]
    with pytest.raises(ValueError, match=r"unknown reward 'maths'.*'math'"):
        get_reward("maths")
    with pytest.raises(ValueError, match="style"):
        get_reward("format", style="xml")
    with pytest.raises(ValueError, match="cannot import"):
        get_reward("no_such_pkg.mod:fn")


@pytest.mark.parametrize("path", ["user_reward:exact_reward", "user_reward.exact_reward"])
def test_user_reward_by_import_path(monkeypatch, path):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures"))
    reward = get_reward(path)
    assert isinstance(reward, FunctionReward) and isinstance(reward, Reward)
    assert reward(["5", "6"], answer=["5", "5"]) == [1.0, 0.0]
    assert reward.score("5", {"answer": "5"}).score == 1.0


def test_user_reward_class_by_import_path():
    reward = get_reward("flexent.rewards.format:FormatReward", weight=2.0)
    assert reward([r"\boxed{1}"]) == [2.0]


def test_required_columns_of_each_reward():
    from flexent.rewards.arithmetic import ArithmeticReward
    from flexent.rewards.countdown import CountdownReward
    from flexent.rewards.format import FormatReward
    from flexent.rewards.math_reward import MathReward

    # class attributes: callers can ask before building a reward
    assert MathReward.columns == ("answer",) and ArithmeticReward.columns == ("answer",)
    assert CountdownReward.columns == ("numbers", "target") and FormatReward.columns == ()
    assert get_reward("math").columns == ("answer",)
    assert get_reward("math", answer_key="solution").columns == ("solution",)
    assert get_reward("arithmetic", answer_key="gold").columns == ("gold",)
    assert get_reward("format").columns == ()


def test_missing_columns():
    countdown = get_reward("countdown")
    assert countdown.missing_columns({}) == ["numbers", "target"]
    assert countdown.missing_columns({"numbers": [1, 2], "prompt": "p"}) == ["target"]
    assert countdown.missing_columns(CountdownTask().problem(0).row()) == []
    math = get_reward("math", answer_key="solution")
    assert math.missing_columns({"answer": "1", "prompt": "p"}) == ["solution"]
    assert math.missing_columns({"solution": "1"}) == []
    assert get_reward("arithmetic").missing_columns(ArithmeticTask().problem(0).row()) == []
    assert get_reward("format").missing_columns({}) == []


def test_function_rewards_have_no_known_columns(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures"))
    reward = get_reward("user_reward:exact_reward")
    assert reward.columns == () and reward.missing_columns({}) == []

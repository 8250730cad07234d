"""math reward: table of expected scores, extraction, and the hard timeout in every context."""

from __future__ import annotations

import math
import multiprocessing
import threading
import time

import pytest

pytest.importorskip("math_verify")

from flexent.rewards import RewardResult, get_reward
from flexent.rewards.extract import last_boxed, normalize_gold
from flexent.rewards.math_reward import MathReward
from flexent.rewards.timeout import CheckTimeout, WorkerError, WorkerPool, run_with_timeout

GSM8K_GOLD = "He sells 1234 apples.\n#### 1,234"
MATH_SOLUTION = r"Halve it, so the answer is $\boxed{\frac{1}{2}}$."
# Each row: completion, gold, expected score. Expected values are the mathematical truth.
TABLE = [
    (r"so $\boxed{0.75}$", r"\frac{3}{4}", 1.0),
    (r"so $\boxed{\frac{3}{4}}$", "0.75", 1.0),
    (r"\boxed{0.5}", r"50\%", 1.0),
    (r"\boxed{50\%}", "0.5", 1.0),
    (r"The answer is \boxed{1,234}.", GSM8K_GOLD, 1.0),
    (r"The answer is \boxed{1234}.", GSM8K_GOLD, 1.0),
    (r"\boxed{0.5}", MATH_SOLUTION, 1.0),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt{2}}{2}", 1.0),  # nested braces
    (r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    (r"\boxed{33}", 33, 1.0),  # AIME: integer gold
    (r"\boxed{5}", "6", 0.0),  # wrong
    (r"\boxed{1,235}", GSM8K_GOLD, 0.0),  # wrong
    ("I do not know.", "6", 0.0),  # no answer
    (r"First \boxed{3}, no wait, \boxed{7}.", "7", 1.0),  # several boxes: the last wins
    (r"First \boxed{3}, no wait, \boxed{7}.", "3", 0.0),
    (r"\boxed{\frac{3}{", "5", 0.0),  # malformed: unclosed box
    (r"\boxed{\frac{}{}}", "5", 0.0),  # malformed LaTeX inside a box
    (r"\boxed{)(]\left}", "5", 0.0),
    ("x" * 10_000 + r" \boxed{2}", "2", 1.0),  # 10,000-character input
    ("{" * 10_000 + r" \boxed{2}", "2", 1.0),
    ([{"role": "user", "content": "?"}, {"role": "assistant", "content": r"\boxed{4}"}], "4", 1.0),
]


@pytest.fixture(scope="module")
def reward() -> MathReward:
    return MathReward(timeout=5.0)


@pytest.mark.parametrize(("completion", "gold", "expected"), TABLE)
def test_math_table(reward, completion, gold, expected):
    result = reward.score(completion, {"answer": gold})
    assert isinstance(result, RewardResult)
    assert result.score == expected, result.info


def test_trl_call_reads_answer_column_and_ignores_trainer_kwargs(reward):
    scores = reward(
        [r"\boxed{12}", "none", r"\boxed{13}"],
        answer=["12", "12", "12"],
        prompts=["p"] * 3,
        trainer_state=object(),
    )
    assert scores == [1.0, 0.0, 0.0]


def test_missing_gold_column_is_a_clear_error(reward):
    with pytest.raises(KeyError, match="'answer'"):
        reward([r"\boxed{1}"], solution=["1"])


def test_unparseable_gold_is_not_scorable(reward):
    result = reward.score(r"\boxed{1}", {"answer": ""})
    assert result.score is None and "error" in result.info


def test_number_fallback_is_opt_in():
    text = "12 eggs, so she earns 18 dollars"
    assert MathReward().score(text, {"answer": "18"}).score == 0.0
    assert MathReward(number_fallback=True).score(text, {"answer": "18"}).score == 1.0


def test_huge_input_is_capped(reward):
    # 2 MB of digits before the box: only the last max_chars characters are read.
    result = reward.score("9" * 2_000_000 + r" \boxed{7}", {"answer": "7"})
    assert result.score == 1.0


def test_last_boxed_and_gold_normalisation():
    assert last_boxed(r"\boxed{a} \fbox{b}") == "b"
    assert last_boxed(r"\boxed 5 and more") == "5"
    assert last_boxed(r"\boxed{\frac{1}{2}} \boxed{") == r"\frac{1}{2}"
    assert normalize_gold("work\n#### 1,234") == "1234"
    assert normalize_gold(MATH_SOLUTION) == r"\frac{1}{2}"


# Ordinary answers with powers, fractions and nesting pass the complexity caps and are checked
# symbolically (reason "verified", not "too_complex" or "exact_match").
ORDINARY = [
    (r"\boxed{2^{10}}", "1024"),  # 2^10 = 1024
    (r"\boxed{x^2+y^2}", "y^2+x^2"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{1}{2}\sqrt{3}"),
    (r"\boxed{(3, \frac{\pi}{2})}", r"\left(3,\frac{\pi}{2}\right)"),
    (r"\boxed{10^{-3}}", "0.001"),
    (r"\boxed{2\lambda}", r"\lambda \cdot 2"),  # \lambda is LaTeX, not Python's lambda
    (r"\boxed{e^{-x^2}}", r"e^{-x^{2}}"),  # a 2-deep chain is allowed where the gold has one
]


@pytest.mark.parametrize(("completion", "gold"), ORDINARY)
def test_ordinary_answers_pass_the_caps_and_verify(reward, completion, gold):
    result = reward.score(completion, {"answer": gold})
    assert (result.score, result.info["reason"]) == (1.0, "verified"), result.info


# --- the hard timeout --------------------------------------------------------------------
# 9^{9^{9}} makes math-verify run for minutes (sympy builds 9**387420489). The check must end
# with a timeout error in the main thread, in another thread and in a daemonic worker process.
# The default caps reject it before parsing (reason "too_complex"), so these tests raise
# max_power_depth to let it reach the worker.
HANG = r"\boxed{9^{9^{9}}}"


def _hang_score() -> RewardResult:
    return MathReward(timeout=0.5, max_power_depth=2).score(HANG, {"answer": "1"})


def test_timeout_in_main_thread():
    result = _hang_score()
    assert result.score == 0.0
    assert "CheckTimeout" in result.info["error"] and result.info["reason"] == "timeout"


def test_default_caps_reject_the_hang_before_the_worker():
    result = MathReward(timeout=0.5).score(HANG, {"answer": "1"})
    assert (result.score, result.info["reason"]) == (0.0, "too_complex")
    assert "error" not in result.info


def test_trl_call_logs_the_fraction_of_timeouts():
    logged: list[tuple[str, float]] = []
    reward = MathReward(timeout=0.5, max_power_depth=2)
    scores = reward(
        [HANG, r"\boxed{12}"], answer=["1", "12"], log_metric=lambda k, v: logged.append((k, v))
    )
    assert scores == [0.0, 1.0]
    assert logged == [("rewards/math/timeouts", 0.5)]  # 1 of the 2 completions timed out


def test_timeout_in_other_thread_and_pool_recovers():
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(result=_hang_score()))
    t.start()
    t.join(120)  # a hang guard only: the timeout itself is 0.5 s
    assert not t.is_alive()
    result = box["result"]
    assert isinstance(result, RewardResult) and "CheckTimeout" in result.info["error"]
    # The killed worker was replaced: a normal check still verifies symbolically.
    after = MathReward().score(r"\boxed{0.25}", {"answer": r"\frac{1}{4}"})
    assert after.score == 1.0 and after.info["reason"] == "verified"


def _score_in_worker(_: int) -> tuple[float | None, str]:
    result = _hang_score()
    return result.score, result.info.get("error", "")


def test_timeout_in_daemonic_worker_process():
    # multiprocessing.Pool workers are daemonic: they may not start multiprocessing
    # children, which is why the timeout worker is a plain subprocess. (fork: this test
    # module is not importable by name in a spawned child.)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        score, error = pool.apply_async(_score_in_worker, (0,)).get(timeout=120)
    assert score == 0.0 and "CheckTimeout" in error


def test_run_with_timeout_kills_and_reports_errors():
    pool = WorkerPool(max_workers=1)  # no preload: starts fast
    try:
        assert run_with_timeout(math.factorial, (5,), timeout=5.0, pool=pool) == 120
        start = time.monotonic()
        with pytest.raises(CheckTimeout):
            run_with_timeout(time.sleep, (60,), timeout=0.3, pool=pool)
        assert time.monotonic() - start < 60  # it did not wait for the sleep to end
        with pytest.raises(WorkerError, match="ValueError"):
            run_with_timeout(math.sqrt, (-1,), timeout=5.0, pool=pool)
        assert run_with_timeout(abs, (-3,), timeout=5.0, pool=pool) == 3
    finally:
        pool.close()


def test_prestart_starts_a_worker_in_the_background():
    """warm_up (at start-up) starts the checker process at once, in a thread, so the first
    batch does not wait for its imports; a second call starts no second worker."""
    pool = WorkerPool(max_workers=2)  # no preload: starts fast
    try:
        MathReward(pool=pool).warm_up()
        pool.prestart()
        deadline = time.monotonic() + 60
        while not pool._idle and time.monotonic() < deadline:  # a hang guard only
            time.sleep(0.05)
        assert len(pool._idle) == 1 and pool._busy == 0 and pool._starting == 0
        worker = pool._idle[0]
        assert run_with_timeout(abs, (-3,), timeout=5.0, pool=pool) == 3
        assert pool._idle == [worker]  # the call used the prestarted worker
    finally:
        pool.close()


def test_get_reward_builds_math():
    reward = get_reward("math", timeout=2.0, number_fallback=True)
    assert isinstance(reward, MathReward) and reward.timeout == 2.0
    assert reward.__name__ == "math"


def test_answer_line_reads_dapo_format():
    """answer_line=True: the text after the last 'Answer:' (DAPO's prompt), then the box."""
    reward = MathReward(answer_line=True)
    gold = {"answer": "34"}
    assert reward.score("Work: 30 + 4.\nAnswer: 34", gold).score == 1.0
    # a number after the answer line does not matter (number_fallback would read 4)
    assert reward.score("Answer: $34$.\nCheck: 2 + 2 = 4", gold).score == 1.0
    assert MathReward(number_fallback=True).score("Answer: 34\nCheck: 2 + 2 = 4", gold).score == 0.0
    assert reward.score(r"no line, but \boxed{34}", gold).score == 1.0
    assert reward.score("The answer is 34", gold).info["reason"] == "no_answer"
    # linear: a long run of 'answer' without a colon
    assert reward.score("answer " * 500_000, gold).info["reason"] == "no_answer"

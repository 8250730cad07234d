"""End-to-end `flexent eval` on a tiny random Qwen2 with the char tokenizer (CPU, seconds)."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest

from flexent.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "eval_tiny.jsonl"


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir  # conftest.py: the tiny Qwen2, saved once


def _eval(model_dir: Path, out: Path, *extra: str) -> dict:
    argv = ["eval", str(model_dir), "-b", str(FIXTURE), "--samples", "2"]
    argv += ["--max-new-tokens", "3", "--out", str(out), "--no-progress", *extra]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_eval_end_to_end(model_dir, tmp_path, capsys):
    results = _eval(model_dir, tmp_path / "a", "--save-completions")
    assert results["samples"] == 2 and results["ks"] == [1, 2]
    assert results["backend"] == "transformers"
    assert results["sampling"] == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "max_new_tokens": 3,
        "seed": 0,
        "chat": True,  # the char tokenizer has a chat template, so --chat auto uses it
    }
    bench = results["benchmarks"]["eval_tiny"]
    assert bench["reward"] == "math" and bench["num_problems"] == 3
    assert [p["answer"] for p in bench["problems"]] == ["4", "15", "3"]
    for p in bench["problems"]:
        assert p["n"] == 2 and 0 <= p["correct"] <= 2 and len(p["scores"]) == 2
        assert len(p["completions"]) == 2 and all(len(c) <= 3 for c in p["completions"])
    # Recompute every metric from the stored per-problem data (binomial formula directly).
    probs = bench["problems"]
    metrics = bench["metrics"]
    assert set(metrics) == {"mean@2", "pass@1", "pass@2", "maj@2"}
    assert metrics["mean@2"] == pytest.approx(sum(p["correct"] / 2 for p in probs) / 3)
    for k in (1, 2):
        direct = sum(1 - comb(2 - p["correct"], k) / comb(2, k) for p in probs) / 3
        assert metrics[f"pass@{k}"] == pytest.approx(direct)
    assert metrics["maj@2"] == pytest.approx(sum(p["maj_correct"] for p in probs) / 3)
    assert results["average"] == metrics  # one benchmark: the average is that benchmark
    table = (tmp_path / "a" / "results.md").read_text()
    assert "| benchmark | problems | mean@2 | pass@1 | pass@2 | maj@2 |" in table
    assert "| eval_tiny | 3 |" in table
    assert "| eval_tiny | 3 |" in capsys.readouterr().out


def test_eval_is_reproducible_and_handles_two_benchmarks(model_dir, tmp_path):
    first = _eval(model_dir, tmp_path / "a", "--save-completions", "--max-samples", "2")
    again = _eval(
        model_dir,
        tmp_path / "b",
        "--save-completions",
        "--max-samples",
        "2",
        "-b",
        "arithmetic",
        "--chat",
        "no",
    )
    assert list(again["benchmarks"]) == ["eval_tiny", "arithmetic"]
    assert again["benchmarks"]["arithmetic"]["reward"] == "arithmetic"
    assert again["benchmarks"]["arithmetic"]["num_problems"] == 2
    assert again["sampling"]["chat"] is False
    assert set(again["average"]) == {"mean@2", "pass@1", "pass@2", "maj@2"}
    # Same seed and batches but chat off: different prompts, so compare a chat-on rerun.
    rerun = _eval(model_dir, tmp_path / "c", "--save-completions", "--max-samples", "2")
    get = lambda r: [p["completions"] for p in r["benchmarks"]["eval_tiny"]["problems"]]  # noqa: E731
    assert get(rerun) == get(first)


def _fails(capsys, argv: list[str]) -> str:
    """Run ``flexent eval`` expecting exit status 2; returns its one-line stderr message."""
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flexent eval: ")
    return err[0]


def test_eval_rejects_bad_ks(model_dir, tmp_path, capsys):
    argv = [str(model_dir), "-b", str(FIXTURE), "--samples", "2", "--out", str(tmp_path / "o")]
    assert "--ks value 4 must be in [1, --samples=2]" in _fails(capsys, [*argv, "--ks", "1", "4"])
    assert not (tmp_path / "o").exists()


def test_reward_param_parsing_and_errors():
    from flexent.commands.eval import reward_params

    # YAML scalars: booleans, ints and strings come back typed
    assert reward_params(["exactly_once=true", "max_chars=50", "style=answer"]) == {
        "exactly_once": True,
        "max_chars": 50,
        "style": "answer",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        reward_params(["no_equals_sign"])


def test_eval_refuses_to_overwrite_results(model_dir, tmp_path, capsys):
    out = tmp_path / "a"
    out.mkdir()
    (out / "results.json").write_text("{}")
    argv = [str(model_dir), "-b", str(FIXTURE), "--out", str(out)]
    assert "exists; choose another --out or pass --overwrite" in _fails(capsys, argv)
    assert (out / "results.json").read_text() == "{}"  # untouched
    results = _eval(model_dir, out, "--max-samples", "1", "--overwrite")
    assert results["benchmarks"]["eval_tiny"]["num_problems"] == 1


BOMB = '''
calls = []


def bomb(completions, **kwargs):
    """Scores the first problem's two samples (one call each), then fails: a late failure."""
    calls.append(1)
    if len(calls) > 2:
        raise RuntimeError("scorer crashed")
    return [0.0 for _ in completions]
'''


def test_eval_mistakes_are_one_line_before_the_model_loads(
    model_dir, tmp_path, capsys, monkeypatch
):
    base = [str(model_dir), "--out", str(tmp_path / "o"), "--no-progress"]
    as_file = tmp_path / "afile"
    as_file.write_text("x")
    msg = _fails(capsys, [str(model_dir), "-b", str(FIXTURE), "--out", str(as_file)])
    assert f"--out {as_file} is a file" in msg
    monkeypatch.setenv("FLEXENT_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    msg = _fails(capsys, [*base, "-b", "aime24"])
    assert "aime24_test.jsonl not found in" in msg and "nowhere" in msg
    no_target = tmp_path / "cd.jsonl"
    no_target.write_text(
        json.dumps({"prompt": "3 4>7=", "answer": "3+4", "numbers": [3, 4]}) + "\n"
    )
    msg = _fails(capsys, [*base, "-b", str(no_target), "--reward", "countdown"])
    assert f"{no_target}:1: lacks the column(s) ['target']" in msg  # rows counted from 1
    msg = _fails(capsys, [*base, "-b", str(FIXTURE), "--reward-param", "nope=1"])
    assert "--reward-param for 'math'" in msg and "nope" in msg
    assert not (tmp_path / "o").exists()  # nothing written by any of them


def test_task_params_pick_the_training_configs_held_out_problems(model_dir, tmp_path, capsys):
    from flexent.config import load_config
    from flexent.integrations.trl.preflight import load_rows

    out = tmp_path / "o"
    argv = [str(model_dir), "-b", "arithmetic", "--task-param", "digits=2", "--task-param",
            "ops=[+]", "--task-param", "seed=3", "--max-samples", "5", "--samples", "1",
            "--max-new-tokens", "2", "--out", str(out), "--no-progress", "--save-completions"]  # fmt: skip
    assert main(["eval", *argv]) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    answers = [p["answer"] for p in results["benchmarks"]["arithmetic"]["problems"]]
    assert results["benchmarks"]["arithmetic"]["task_params"] == {
        "digits": 2, "ops": ["+"], "seed": 3}  # fmt: skip
    # the held-out rows `flexent train` evaluates with the same data.params
    cfg = load_config(None, ["model.path=x", "data.source=arithmetic", "reward.name=arithmetic",
                             "data.params={digits: 2, ops: ['+'], seed: 3}",
                             "evaluation.max_samples=5"])  # fmt: skip
    rows = load_rows(cfg, evaluation=True)
    assert answers == [r["answer"] for r in rows]
    for r in rows:  # 2-digit additions, answers computed here from the prompt
        a, b = (int(x) for x in r["prompt"].split("What is ")[1].split("?")[0].split(" + "))
        assert 10 <= a <= 99 and 10 <= b <= 99 and r["answer"] == str(a + b)
    base = [str(model_dir), "-b", "arithmetic", "--out", str(tmp_path / "x"), "--no-progress"]
    assert "ArithmeticTask: digits must be >= 1, got 0" in _fails(
        capsys, [*base, "--task-param", "digits=0"]
    )
    msg = _fails(capsys, [*base, "--task-param", "digitz=2"])
    assert "--task-param for arithmetic" in msg and "digitz" in msg
    msg = _fails(capsys, [str(model_dir), "-b", str(FIXTURE), "--task-param", "digits=2"])
    assert "--task-param is for the procedural tasks" in msg
    assert "KEY=VALUE" in _fails(capsys, [*base, "--task-param", "digits"])
    assert not (tmp_path / "x").exists()


def test_samples_are_written_as_they_are_scored(model_dir, tmp_path, monkeypatch):
    (tmp_path / "bomb_reward.py").write_text(BOMB)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "o"
    argv = ["eval", str(model_dir), "-b", str(FIXTURE), "--samples", "2", "--batch-size", "2",
            "--max-new-tokens", "2", "--reward", "bomb_reward.bomb", "--out", str(out),
            "--no-progress"]  # fmt: skip
    with pytest.raises(RuntimeError, match="scorer crashed"):
        main(argv)
    kept = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [(r["benchmark"], r["index"], r["n"]) for r in kept] == [("eval_tiny", 0, 2)]
    assert len(kept[0]["completions"]) == 2

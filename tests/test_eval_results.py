"""Scoring, results.json / table, and the transformers backend on a tiny random model."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from flexent.evaluation.generation import SamplingConfig, TransformersGenerator, render_prompt
from flexent.evaluation.results import (
    build_results,
    load_results,
    results_table,
    score_problem,
    write_results,
)
from flexent.models import build_char_tokenizer


@dataclass
class _Result:
    score: float | None
    info: dict[str, Any] = field(default_factory=dict)


class _LastWordReward:
    """Test reward: the last word is the answer; 1.0 if it equals example["answer"]."""

    def score(self, completion: str, example: dict) -> _Result:
        words = completion.split()
        if example["answer"] == "?":
            return _Result(None, {"extracted": words[-1] if words else None})
        if not words:
            return _Result(0.0, {"extracted": None})
        return _Result(float(words[-1] == example["answer"]), {"extracted": words[-1]})


def test_score_problem_counts_and_vote():
    texts = ["so 4", "so 5", "it is 4", "", "so 5", "so 5"]
    p = score_problem(3, {"answer": "4"}, texts, _LastWordReward())
    assert (p.index, p.n, p.correct, p.unscorable) == (3, 6, 2, 0)
    assert p.extracted == ["4", "5", "4", None, "5", "5"]
    # "5" has 3 votes against 2 for "4": the majority is wrong.
    assert (p.majority, p.majority_votes, p.maj_correct) == ("5", 3, False)
    unscorable = score_problem(0, {"answer": "?"}, ["a", "b"], _LastWordReward())
    assert (unscorable.correct, unscorable.unscorable) == (0, 2)


def _problems(counts: list[tuple[int, int]]):
    """Problems with n samples, the first c answering "1" (correct), the rest "0"."""
    reward = _LastWordReward()
    return [
        score_problem(i, {"answer": "1"}, ["1"] * c + ["0"] * (n - c), reward)
        for i, (n, c) in enumerate(counts)
    ]


def test_build_results_metrics_and_table(tmp_path):
    a = _problems([(4, 0), (4, 1), (4, 4)])
    b = _problems([(4, 2), (4, 3)])
    results = build_results(
        {
            "a": {"source": "a.jsonl", "reward": "test", "problems": a},
            "b": {"source": "b", "reward": "test", "problems": b},
        },
        model="m",
        backend="transformers",
        samples=4,
        ks=[1, 2, 4],
        sampling={"seed": 0},
    )
    ma = results["benchmarks"]["a"]["metrics"]
    # a: mean@4 = (0 + 1/4 + 1) / 3 = 5/12; pass@2 = (0 + (1 - C(3,2)/C(4,2)) + 1) / 3
    #    = (0 + 1/2 + 1) / 3 = 1/2; pass@4 = (0 + 1 + 1) / 3 = 2/3;
    #    maj@4: majorities "0", "0", "1" -> 1/3.
    assert ma["mean@4"] == pytest.approx(5 / 12)
    assert ma["pass@1"] == pytest.approx(5 / 12)
    assert ma["pass@2"] == pytest.approx(1 / 2)
    assert ma["pass@4"] == pytest.approx(2 / 3)
    assert ma["maj@4"] == pytest.approx(1 / 3)
    # b: mean@4 = (2/4 + 3/4) / 2 = 5/8; maj: tie 2-2 -> "1" seen first -> correct; "1" x3 -> 1.
    mb = results["benchmarks"]["b"]["metrics"]
    assert mb["mean@4"] == pytest.approx(5 / 8)
    assert mb["maj@4"] == 1.0
    assert results["average"]["mean@4"] == pytest.approx((5 / 12 + 5 / 8) / 2)
    table = results_table(results)
    assert (
        table.splitlines()[0]
        == "| benchmark | problems | mean@4 | pass@1 | pass@2 | pass@4 | maj@4 |"
    )
    assert "| a | 3 | 41.7 | 41.7 | 50.0 | 66.7 | 33.3 |" in table
    assert "| **average** |" in table

    # intervals over problems: b's two problems score 2/4 and 3/4, so a bootstrap mean is one
    # of 1/2, 5/8, 3/4 and the 95 % interval spans the extremes; b's pass@4 is 1 on both
    ib = results["benchmarks"]["b"]["intervals"]
    assert ib["mean@4"] == [0.5, 0.75] and ib["pass@4"] == [1.0, 1.0]
    json_path, md_path = write_results(results, tmp_path)
    text = md_path.read_text()
    assert table in text and "| b | 50.0-75.0 | 50.0-75.0 |" in text
    loaded = load_results(json_path)
    assert loaded == json.loads(json.dumps(results))
    # pass@k recomputed from the stored counts with the binomial formula directly.
    problems = loaded["benchmarks"]["a"]["problems"]
    direct = sum(1 - math.comb(p["n"] - p["correct"], 2) / math.comb(p["n"], 2) for p in problems)
    assert direct / len(problems) == pytest.approx(ma["pass@2"])


def test_load_results_rejects_other_files(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"x": 1}')
    with pytest.raises(ValueError, match="not a flexent eval results file"):
        load_results(path)
    path.write_text("{")
    with pytest.raises(ValueError, match=r"r\.json:1: invalid JSON \(Expecting property name"):
        load_results(path)
    with pytest.raises(ValueError, match="eval results file not found"):
        load_results(tmp_path / "missing.json")


def test_sampling_config_validation():
    assert SamplingConfig().to_dict() == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "max_new_tokens": 1024,
        "seed": 0,
    }
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingConfig(max_new_tokens=0)


def test_render_prompt(tiny):
    _, tok = tiny
    assert render_prompt(tok, "plain") == ("plain", False)
    text, templated = render_prompt(tok, [{"role": "user", "content": "hi"}])
    assert templated and text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    tok_no_template = build_char_tokenizer("ab")
    tok_no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(tok_no_template, [{"role": "user", "content": "a"}])


def test_transformers_generator_shapes_and_seeds(tiny):
    model, tok = tiny
    prompts = ["1+1=", "12*3=", [{"role": "user", "content": "2+2?"}]]
    gen = TransformersGenerator(model, tok, SamplingConfig(max_new_tokens=4, seed=1), batch_size=4)
    out = gen.generate(prompts, n=3)
    assert [len(x) for x in out] == [3, 3, 3]
    assert all(isinstance(t, str) and len(t) <= 4 for x in out for t in x)
    assert gen.generate(prompts, n=3) == out  # same seed, same batches -> same samples
    assert tok.padding_side == "right"  # restored after left-padded generation
    other = TransformersGenerator(
        model, tok, SamplingConfig(max_new_tokens=4, seed=2), batch_size=4
    )
    assert other.generate(prompts, n=3) != out
    greedy = TransformersGenerator(model, tok, SamplingConfig(temperature=0, max_new_tokens=4))
    g = greedy.generate(prompts[:2], n=2)
    assert g[0][0] == g[0][1] and g[1][0] == g[1][1]
    done: list[int] = []
    gen.generate(prompts, n=2, progress=done.append)
    assert sum(done) == 3 and len(done) == 2  # batch_size 4 // n 2 = 2 prompts per call


def test_left_padding_matches_unbatched_greedy(tiny):
    model, tok = tiny
    greedy = SamplingConfig(temperature=0, max_new_tokens=5)
    batched = TransformersGenerator(model, tok, greedy, batch_size=8).generate(
        ["7", "123+456="], n=1
    )
    single = [
        TransformersGenerator(model, tok, greedy).generate([p], n=1)[0] for p in ["7", "123+456="]
    ]
    assert batched == single

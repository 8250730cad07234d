"""load_prompts: formats, field mapping, bad rows, built-in names, procedural tasks."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from flexent.data import BOXED_INSTRUCTION, DataError, load_prompts

FIX = Path(__file__).parent / "fixtures"
SHARED = Path("/work/shared/data/math")


def test_jsonl_fields_gsm8k_golds_and_blank_lines():
    rows = load_prompts(FIX / "good.jsonl")
    assert [r["answer"] for r in rows] == ["5", "2000", "-3"]  # "#### 2,000" -> "2000"
    assert rows[0]["prompt"] == "What is 2 + 3?"
    assert rows[0]["source"] == "toy"  # other columns are kept
    assert rows[0]["solution"].endswith("#### 5")  # the worked solution is kept
    assert rows.report.n_rows == 3 and rows.report.n_skipped == 0


def test_instruction_system_prompt_and_chat():
    rows = load_prompts(
        FIX / "good.jsonl", max_samples=1, instruction=BOXED_INSTRUCTION, system_prompt="Be brief."
    )
    assert rows[0]["prompt"] == f"Be brief.\n\nWhat is 2 + 3?\n{BOXED_INSTRUCTION}"
    rows = load_prompts(FIX / "good.jsonl", max_samples=1, system_prompt="S", chat=True)
    assert rows[0]["prompt"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    rows = load_prompts(FIX / "good.jsonl", max_samples=1, instruction="Q: {problem}\nA:")
    assert rows[0]["prompt"] == "Q: What is 2 + 3?\nA:"


@pytest.mark.parametrize(
    ("max_line", "message"),
    [
        (3, r"bad\.jsonl:3: no answer field"),
        (4, r"bad\.jsonl:4: field 'answer' is empty"),
        (5, r"bad\.jsonl:5: field 'answer' must be a string or number"),
        (6, r"bad\.jsonl:6: invalid JSON"),
    ],
)
def test_bad_rows_raise_with_file_and_line(tmp_path, max_line, message):
    # Keep lines 1-2 (good) plus one bad line, so each error is raised on its own.
    lines = (FIX / "bad.jsonl").read_text().splitlines()
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([*lines[:2], *[""] * (max_line - 3), lines[max_line - 1]]) + "\n")
    with pytest.raises(DataError, match=message):
        load_prompts(path)


def test_skip_counts_bad_rows(caplog):
    with caplog.at_level(logging.WARNING, logger="flexent.data"):
        rows = load_prompts(FIX / "bad.jsonl", on_error="skip")
    # lines 1, 2 (int answer 4) and 7 (\boxed{6}) are good; lines 3-6 are bad.
    assert [r["answer"] for r in rows] == ["2", "4", "6"]
    assert rows.report.n_skipped == 4
    assert rows.report.problems[0].endswith(
        "bad.jsonl:3: no answer field: expected one of "
        "['answer', 'final_answer', 'solution', 'ground_truth'], "
        "row has ['problem']"
    )
    assert "skipped 4 bad rows" in caplog.text


def test_field_override_and_missing_override():
    rows = load_prompts(FIX / "good.jsonl", prompt_field="source", answer_field="question")
    assert rows[0]["prompt"] == "toy" and rows[0]["answer"] == "What is 2 + 3?"
    with pytest.raises(DataError, match=r"good\.jsonl:1: missing prompt field 'text'"):
        load_prompts(FIX / "good.jsonl", prompt_field="text")


def test_json_with_math_solutions():
    rows = load_prompts(FIX / "math.json")
    assert [r["answer"] for r in rows] == [r"\frac{3}{4}", "0.5"]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"question": ["a?", "b?"], "final_answer": ["1", ""]}), path)
    with pytest.raises(DataError, match=r"rows\.parquet row 1: field 'final_answer' is empty"):
        load_prompts(path)
    rows = load_prompts(path, on_error="skip")
    assert [(r["prompt"], r["answer"]) for r in rows] == [("a?", "1")]


def test_bad_arguments_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_prompts(FIX / "good.jsonl", on_error="ignore")
    with pytest.raises(DataError, match=r"data file not found: .*nope\.jsonl"):
        load_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="split"):
        load_prompts(FIX / "good.jsonl", split="train")
    (tmp_path / "obj.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(DataError, match=r"obj\.json: a \.json file must hold a list"):
        load_prompts(tmp_path / "obj.json")


def test_builtin_names_resolve_from_data_dir_and_env(tmp_path, monkeypatch):
    (tmp_path / "math").mkdir()
    shutil.copy(FIX / "good.jsonl", tmp_path / "math" / "gsm8k_test.jsonl")
    monkeypatch.delenv("FLEXENT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path / "math")  # no ./data here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="FLEXENT_DATA_DIR") as err:
        load_prompts("gsm8k")
    assert "data/math" in str(err.value) and ".cache/flexent/data" in str(err.value)
    assert [r["answer"] for r in load_prompts("gsm8k", data_dir=tmp_path)] == ["5", "2000", "-3"]
    monkeypatch.setenv("FLEXENT_DATA_DIR", str(tmp_path))
    assert len(load_prompts("gsm8k", max_samples=2)) == 2
    with pytest.raises(DataError, match=r"gsm8k_train\.jsonl"):
        load_prompts("gsm8k", split="train")
    # the default search path: ./data (and ./data/math)
    monkeypatch.delenv("FLEXENT_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(FIX / "good.jsonl", tmp_path / "data" / "gsm8k_test.jsonl")
    assert len(load_prompts("gsm8k")) == 3
    with pytest.raises(DataError, match="no split 'valid'"):
        load_prompts("math500", split="valid")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared benchmark files not present")
@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("gsm8k", 1319),
        ("math500", 500),
        ("aime24", 30),
        ("aime25", 30),
        ("amc23", 40),
        ("olympiadbench", 674),
    ],
)
def test_real_benchmark_files(name, rows):
    loaded = load_prompts(name, data_dir=SHARED.parent)
    assert len(loaded) == rows and loaded.report.n_skipped == 0
    if name == "gsm8k":  # every GSM8K gold is an integer after "#### N" normalisation
        assert all(r["answer"].lstrip("-").isdigit() for r in loaded)


def test_procedural_tasks_are_deterministic_with_disjoint_splits():
    train = load_prompts("countdown", max_samples=100, seed=3)
    again = load_prompts("countdown", max_samples=100, seed=3)
    test = load_prompts("countdown", split="test", max_samples=30, seed=3)
    assert train == again
    assert {r["prompt"] for r in train}.isdisjoint(r["prompt"] for r in test)
    row = train[0]
    assert set(row) >= {"prompt", "answer", "numbers", "target", "solution"}
    assert row["answer"] == str(row["target"]) and "<answer>" in row["prompt"]
    arith = load_prompts("arithmetic", max_samples=5, chat=True, task_params={"digits": 2})
    assert arith[0]["prompt"][0]["role"] == "user" and arith[0]["answer"].lstrip("-").isdigit()
    with pytest.raises(ValueError, match="task_params"):
        load_prompts("countdown", max_samples=2, task_params={"digits": 2})


@pytest.mark.slow
def test_hf_local_dataset_directory(tmp_path):
    pytest.importorskip("datasets")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    shutil.copy(FIX / "good.jsonl", tmp_path / "train.jsonl")
    rows = load_prompts(str(tmp_path), split="train")
    assert [r["answer"] for r in rows] == ["5", "2000", "-3"]

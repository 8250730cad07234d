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
        "['answer', 'final_answer', 'reward_model.ground_truth', 'solution', 'ground_truth'], "
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
    with pytest.raises(DataError, match=r"rows\.parquet row 2: field 'final_answer' is empty"):
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


# --- verl's parquet layout: DAPO-Math-17k and verl's GSM8K preprocessing ---------------------

DAPO_PROMPT = (
    "Solve the following math problem step by step. The last line of your response should be of "
    "the form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{}"
    '\n\nRemember to put your answer on its own line after "Answer:".'
)


def dapo_parquet(tmp_path: Path) -> Path:
    """tests/fixtures/dapo_math_17k.jsonl as a parquet file with DAPO-Math-17k's exact schema
    (the dataset card's features: a list of {content, role} structs, two structs)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
            ("extra_info", pa.struct([("index", pa.string())])),
        ]
    )
    rows = [json.loads(line) for line in (FIX / "dapo_math_17k.jsonl").read_text().splitlines()]
    path = tmp_path / "dapo-math-17k.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    assert pq.read_schema(path).names == schema.names
    return path


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_dapo_rows_load_with_no_field_options(tmp_path, kind):
    path = dapo_parquet(tmp_path) if kind == "parquet" else FIX / "dapo_math_17k.jsonl"
    rows = load_prompts(path)  # the answer is found at reward_model.ground_truth
    assert [r["answer"] for r in rows] == ["64", "34", "-8"]
    first = rows[0]
    # chat=False: the single user message's content, as it is
    assert first["prompt"] == DAPO_PROMPT.format(
        "Let $a$ and $b$ be positive integers with $a + b = 10$ and $ab = 21$. "
        "Find $a^2 + b^2 + 6$."
    )
    assert first["problem"] == first["prompt"]
    # every column is kept for rewards, nested ones whole
    assert first["reward_model"] == {"ground_truth": "64", "style": "rule-lighteval/MATH_v2"}
    assert first["extra_info"] == {"index": "0b0e9f3c-5f0e-4a44-9c59-2a5c0c1f5d10"}
    assert (first["data_source"], first["ability"]) == ("math_dapo", "MATH")
    assert "solution" not in first  # the gold needed no normalisation
    # explicit dotted paths give the same rows
    same = load_prompts(path, prompt_field="prompt", answer_field="reward_model.ground_truth")
    assert same == rows


def test_dapo_rows_as_chat_messages_with_instruction_and_system_prompt(tmp_path):
    path = dapo_parquet(tmp_path)
    rows = load_prompts(path, chat=True, max_samples=1)
    content = rows[0]["problem"]
    assert rows[0]["prompt"] == [{"role": "user", "content": content}]
    rows = load_prompts(path, chat=True, max_samples=1, system_prompt="S", instruction="Box it.")
    assert rows[0]["prompt"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": f"{content}\nBox it."},
    ]
    rows = load_prompts(path, max_samples=1, system_prompt="S", instruction="Q: {problem}\nA:")
    assert rows[0]["prompt"] == f"S\n\nQ: {content}\nA:"


def test_dotted_paths_and_their_errors(tmp_path):
    path = dapo_parquet(tmp_path)
    rows = load_prompts(path, answer_field="extra_info.index", max_samples=1)
    assert rows[0]["answer"] == "0b0e9f3c-5f0e-4a44-9c59-2a5c0c1f5d10"
    assert rows[0]["extra_info"] == {"index": rows[0]["answer"]}  # a nested field stays
    with pytest.raises(
        DataError,
        match=r"dapo-math-17k\.parquet row 1: missing answer field 'reward_model\.answer': "
        r"'reward_model' has no 'answer' \(it has \['ground_truth', 'style'\]\)",
    ):
        load_prompts(path, answer_field="reward_model.answer")
    with pytest.raises(DataError, match=r"row 1: missing answer field 'ability\.x': 'ability' is "
                       r"a str, not an object"):  # fmt: skip
        load_prompts(path, answer_field="ability.x")
    with pytest.raises(DataError, match=r"row 1: missing prompt field 'question\.text': row has "
                       r"no 'question'"):  # fmt: skip
        load_prompts(path, prompt_field="question.text")
    with pytest.raises(DataError, match=r"row 1: field 'reward_model' must be a string or number"):
        load_prompts(path, answer_field="reward_model")


def test_flat_answer_first_and_dotted_keys(tmp_path):
    path = tmp_path / "rows.jsonl"
    row = {"prompt": "p", "answer": "1", "reward_model": {"ground_truth": "2"}, "a.b": "3"}
    path.write_text(json.dumps(row) + "\n")
    assert load_prompts(path)[0]["answer"] == "1"  # a flat `answer` wins over the nested gold
    got = load_prompts(path, answer_field="a.b")[0]  # a key with dots is matched as a key
    assert got["answer"] == "3" and "a.b" not in got


def test_verl_gsm8k_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIX / "gsm8k_verl.jsonl").read_text().splitlines()]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    loaded = load_prompts(path)
    assert [r["answer"] for r in loaded] == ["72", "2400"]
    assert loaded[1]["prompt"] == (
        "A shop sells 1,200 pencils a week. How many pencils does it sell in 2 weeks? "
        'Let\'s think step by step and output the final answer after "####".'
    )
    assert loaded[0]["extra_info"]["answer"].endswith("#### 72")  # kept for rewards
    assert loaded[0]["extra_info"]["question"].startswith("Natalia sold clips")
    assert loaded[0]["data_source"] == "openai/gsm8k"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (2, r"field 'prompt' is an empty message list"),
        (3, r"field 'prompt': message 0 is a str, not a \{role, content\} object"),
        (4, r"field 'prompt': message 0 has no 'content' \(it has \['role'\]\)"),
        (5, r"field 'prompt': message 0 has role 'tool'; roles: \['system', 'user', 'assistant'\]"),
        (6, r"field 'prompt': message 0 content must be a string, got list"),
        (7, r"field 'prompt': no user message with text"),
        (8, r"no answer field: expected one of \['answer', 'final_answer', "
            r"'reward_model\.ground_truth'"),
        (9, r"field 'prompt': message 1 is an assistant turn: a multi-turn prompt needs "
            r"chat=True"),
    ],
)  # fmt: skip
def test_bad_message_rows_raise_with_file_and_line(tmp_path, line, message):
    lines = (FIX / "bad_messages.jsonl").read_text().splitlines()
    path = tmp_path / "bad_messages.jsonl"
    path.write_text("\n".join([lines[0], *[""] * (line - 2), lines[line - 1]]) + "\n")
    with pytest.raises(DataError, match=rf"bad_messages\.jsonl:{line}: {message}"):
        load_prompts(path)


def test_bad_message_rows_skip_and_multi_turn_chat():
    rows = load_prompts(FIX / "bad_messages.jsonl", on_error="skip")
    assert len(rows) == 1 and rows.report.n_skipped == 8
    assert rows.report.problems[-1].startswith(f"{FIX / 'bad_messages.jsonl'}:9: ")
    # with chat=True the multi-turn prompt is kept; the instruction goes to the last user turn
    rows = load_prompts(FIX / "bad_messages.jsonl", chat=True, on_error="skip", instruction="I")
    assert rows.report.n_skipped == 7
    assert rows[1]["prompt"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2\nI"},
    ]
    assert rows[1]["problem"] == "Q1\n\nQ2"


def test_message_rendering_rules(tmp_path):
    path = tmp_path / "m.jsonl"
    messages = [
        {"role": "system", "content": "Row system."},
        {"role": "user", "content": "Part 1."},
        {"role": "user", "content": "Part 2."},
    ]
    path.write_text(json.dumps({"prompt": messages, "answer": "1", "extra": {"k": 1}}) + "\n")
    # text: system, then the user contents, blank-line separated; the instruction at the end
    assert (
        load_prompts(path, instruction="I")[0]["prompt"] == "Row system.\n\nPart 1.\n\nPart 2.\nI"
    )
    # a configured system prompt replaces the row's own, as text and as a message
    assert load_prompts(path, system_prompt="S")[0]["prompt"] == "S\n\nPart 1.\n\nPart 2."
    chat = load_prompts(path, system_prompt="S", chat=True)[0]["prompt"]
    assert chat == [{"role": "system", "content": "S"}, *messages[1:]]
    assert load_prompts(path, chat=True)[0]["prompt"] == messages  # kept as they are


def test_home_relative_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(FIX / "dapo_math_17k.jsonl", tmp_path / "dapo.jsonl")
    assert len(load_prompts("~/dapo.jsonl")) == 3


def test_dapo_answer_line_scores_only_with_number_fallback():
    """DAPO's prompt asks for a last line `Answer: N`, not \\boxed{}: the math reward reads it
    only with number_fallback (docs/tasks.md)."""
    from flexent.rewards import get_reward

    row = load_prompts(FIX / "dapo_math_17k.jsonl", max_samples=2)[1]
    completion = "There are 5 * 3 = 15 divisors, and 15 + 19 = 34.\nAnswer: 34"
    plain = get_reward("math").score(completion, row)
    assert (plain.score, plain.info["reason"]) == (0.0, "no_answer")
    assert get_reward("math", number_fallback=True).score(completion, row).score == 1.0
    assert get_reward("math").score(r"so \boxed{34}", row).score == 1.0


def test_verl_rows_make_a_trl_dataset(tmp_path):
    """The rows go to TRL as ``datasets.Dataset.from_list``; chat prompts stay conversational."""
    datasets = pytest.importorskip("datasets")
    trl_data = pytest.importorskip("trl.data_utils")

    rows = load_prompts(dapo_parquet(tmp_path), chat=True)
    ds = datasets.Dataset.from_list(list(rows))
    assert ds[0]["reward_model"]["ground_truth"] == "64"
    assert trl_data.is_conversational(ds[0])
    assert not trl_data.is_conversational(datasets.Dataset.from_list(list(load_prompts(
        dapo_parquet(tmp_path)))).select([0])[0])  # fmt: skip

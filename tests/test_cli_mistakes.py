"""The last user mistakes of issue #21: each is one line, a non-zero exit, before any model
loads, and nothing left behind (no run, report or output folder).

Most cases call ``flexent.cli.main`` in-process (the same code path as the console script,
without an interpreter start-up per case); the ones that need a real process (Python's own
warning output, an exit without loading the model) run ``python -m flexent``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

from flexent.cli import main
from tiny_support import write_train_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model, countdown rows and a train config; returns (folder, config path)."""
    root = tmp_path_factory.mktemp("mistakes")
    return root, write_train_env(root)


def one_line(capsys, argv: list[str], command: str, code: int = 2) -> str:
    """Run ``flexent ARGV``; it must exit ``code`` with exactly one stderr line."""
    capsys.readouterr()
    assert main(argv) == code
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith(f"flexent {command}: "), err
    return err[0]


def flexent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flexent", *args], capture_output=True, text=True, cwd=cwd,
        timeout=300,
    )  # fmt: skip


# --- YAML: duplicate keys, lists, binary files ---------------------------------------------


def test_two_arms_of_one_name_are_refused_naming_both_lines(env, tmp_path, capsys):
    """YAML keeps the last of two equal keys: the baseline arm `static` silently became `id`."""
    _, cfg = env
    spec = tmp_path / "dup.yaml"
    spec.write_text(
        f"base: {cfg}\nout: {tmp_path / 'out'}\ngroups:\n"
        "  static: {entropy_control.strategy: static}\n"
        "  static: {entropy_control.strategy: id}\n"
        "baseline: static\n"
    )
    line = one_line(capsys, ["sweep", str(spec), "--dry-run"], "sweep")
    assert line == (
        f"flexent sweep: {spec}:5: invalid YAML: key 'groups.static' is given twice (lines 4 "
        "and 5); YAML would silently keep only the last"
    )
    assert not (tmp_path / "out").exists()


def test_duplicate_keys_in_a_train_config(env, tmp_path, capsys):
    _, cfg = env
    dup = tmp_path / "dup.yaml"
    dup.write_text(cfg.read_text() + "trainer: {max_steps: 5}\n")
    line = one_line(capsys, ["train", str(dup), f"output.dir={tmp_path / 'run'}"], "train")
    assert "key 'trainer' is given twice (lines 5 and 11)" in line
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  path: a\n  dtype: float32\n  path: b\n")
    line = one_line(capsys, ["train", str(nested)], "train")
    assert line.endswith("key 'model.path' is given twice (lines 2 and 4); YAML would silently "
                         "keep only the last")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_config_that_is_a_list_or_binary(env, tmp_path, capsys):
    listed = tmp_path / "list.yaml"
    listed.write_text("- model: {path: x}\n")
    line = one_line(capsys, ["train", str(listed)], "train")
    assert line == (
        f"flexent train: {listed}: a config file must be a mapping of sections (model:, data:, "
        "reward:, trainer:, ...), not a list"
    )
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    line = one_line(capsys, ["train", str(binary)], "train")
    assert line == f"flexent train: {binary}: not a YAML text file (byte 0 is b'\\x89', not UTF-8)"
    line = one_line(capsys, ["sweep", str(binary)], "sweep")
    assert line.endswith("not a YAML text file (byte 0 is b'\\x89', not UTF-8)")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {path: [\n")
    line = one_line(capsys, ["train", str(broken)], "train")
    assert line.startswith(f"flexent train: {broken}:2:1: invalid YAML (")


def test_an_override_error_names_the_override_not_the_file(env, capsys):
    _, cfg = env
    line = one_line(capsys, ["train", str(cfg), "model.nosuch=1"], "train")
    assert line == (
        "flexent train: config key 'model.nosuch' (override model.nosuch=1): Key 'nosuch' not "
        "in 'ModelConfig'"
    )
    line = one_line(capsys, ["train", str(cfg), "evaluation.num_samples=many"], "train")
    assert "(override evaluation.num_samples=many)" in line and str(cfg) not in line


# --- flexent report -----------------------------------------------------------------------


def test_report_on_what_is_not_a_run(env, tmp_path, capsys):
    root, _ = env
    (tmp_path / "empty").mkdir()
    out = tmp_path / "report"
    cases = [
        (tmp_path / "empty", "has no metrics.jsonl (is it a flexent run directory?)"),
        (tmp_path / "missing", "run directory not found"),
        (root / "model", "has no metrics.jsonl"),
        (root / "data.jsonl", "is a file, not a run directory"),
    ]
    for path, needle in cases:
        assert needle in one_line(capsys, ["report", str(path), "--out", str(out)], "report")
    run = tmp_path / "corrupt"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "a" 1}\n{"step": 3}\n')
    line = one_line(capsys, ["report", str(run), "--out", str(out)], "report")
    assert line == (
        f"flexent report: {run}/metrics.jsonl:2: invalid JSON (Expecting ':' delimiter at "
        "column 17)"
    )
    assert not out.exists()


# --- flexent train: before the model loads ------------------------------------------------


@pytest.mark.parametrize(
    ("output_dir", "needle"),
    [
        ("/proc/flexent-x", "output.dir /proc/flexent-x: cannot write there (No such file"),
        ("{root}/data.jsonl", "output.dir {root}/data.jsonl is a file, not a folder"),
        ("{root}/data.jsonl/run", "cannot write there (Not a directory: {root}/data.jsonl)"),
    ],
)
def test_an_output_dir_that_cannot_be_written(env, capsys, output_dir, needle):
    root, cfg = env
    argv = ["train", str(cfg), f"output.dir={output_dir.format(root=root)}"]
    assert needle.format(root=root) in one_line(capsys, argv, "train")
    assert not Path("/proc/flexent-x").exists()


def test_inert_clipping_is_refused_from_the_config(env, tmp_path, capsys):
    _, cfg = env
    run = tmp_path / "inert"
    argv = ["train", str(cfg), "trainer.steps_per_generation=1", f"output.dir={run}"]
    line = one_line(capsys, argv, "train")
    assert line.startswith("flexent train: PPO clipping is inert with this configuration: "
                           "gradient_accumulation_steps=1 is a multiple of")  # fmt: skip
    assert line.endswith("(entropy_control.on_inert: warn runs it anyway)")
    assert not run.exists()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("trainer.loss_type=cispo", "trainer.loss_type='cispo' is a TRL loss, not a normalisation"),
        ("trainer.importance_sampling_level=sequence",
         "trainer.importance_sampling_level='sequence' is not applied by flexent's losses"),
        ("trainer.delta=3.0", "trainer.delta (TRL's two-sided clip) is not applied"),
        ("trainer.entropy_coef=0.01", "TRL's entropy bonus (trainer.entropy_coef"),
        ("trainer.use_adaptive_entropy=true", "TRL's entropy bonus (trainer.entropy_coef"),
    ],
)  # fmt: skip
def test_trl_settings_a_flexent_loss_does_not_apply_are_refused_from_the_config(
    env, tmp_path, capsys, monkeypatch, override, needle
):
    """The trainer's own refusals (check_trainer_args), from the config: the model never loads."""
    import flexent.integrations.trl.run as run_module

    def no_model(cfg):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(run_module, "_load_model", no_model)
    _, cfg = env
    run = tmp_path / "run"
    line = one_line(capsys, ["train", str(cfg), override, f"output.dir={run}"], "train")
    assert line.startswith(f"flexent train: {needle}"), line
    assert not run.exists()


def test_a_data_row_of_the_wrong_type_names_its_line(env, tmp_path, capsys):
    _, cfg = env
    data = tmp_path / "rows.jsonl"
    rows = [{"prompt": "1 2>3=", "answer": "1+2", "numbers": [1, 2], "target": 3},
            {"prompt": "4 25>29=", "answer": "4+25", "numbers": "4 25", "target": 29}]  # fmt: skip
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = tmp_path / "run"
    line = one_line(
        capsys, ["train", str(cfg), f"data.source={data}", f"output.dir={run}"], "train"
    )
    assert line == (
        f"flexent train: data.source {data}:2: column 'numbers' must be a list of integers "
        "(reward 'countdown'), got '4 25'"
    )
    # a column of mixed types that no reward reads: the dataset would refuse it, unnamed
    rows[1]["numbers"], rows[1]["meta"], rows[0]["meta"] = [4, 25], [1], "a"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    line = one_line(
        capsys, ["train", str(cfg), f"data.source={data}", f"output.dir={run}"], "train"
    )
    assert line == (
        f"flexent train: data.source {data}:2: column 'meta' is a list ([1]) where {data}:1 "
        "has a str; a column must hold one type of value in every row"
    )
    assert not run.exists()


def test_rows_are_counted_from_one_and_json_columns_are_right(env, tmp_path, capsys):
    _, cfg = env
    listed = tmp_path / "rows.json"
    listed.write_text('[{"prompt": "1 2>3=", "answer": "3"},\n {"prompt": "x"}]')
    line = one_line(capsys, ["train", str(cfg), f"data.source={listed}"], "train")
    assert f"{listed} row 2: no answer field" in line
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"prompt": "1 2>3=", "answer": "3"\n')  # the brace is missing at the end
    line = one_line(capsys, ["train", str(cfg), f"data.source={torn}"], "train")
    assert line.endswith(f"{torn}:1: invalid JSON (Expecting ',' delimiter at column 35)")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"prompt": "a",\n  "answer": 1,, "x": 2}]')
    line = one_line(capsys, ["train", str(cfg), f"data.source={bad}"], "train")
    assert line.endswith(f"{bad}:2: invalid JSON (Expecting property name enclosed in double "
                         "quotes at column 15)")  # fmt: skip


def test_the_long_prompt_advice_is_one_that_trl_accepts():
    """TRL 1.16's GRPOConfig has no max_prompt_length: the warning must not advise it."""
    from flexent.config import load_config
    from flexent.integrations.trl.run import warn_long_prompts
    from tiny_support import tiny_model

    model, tok = tiny_model("0123456789")
    model.config.max_position_embeddings = 8
    cfg = load_config(None, ["model.path=x", "data.source=y", "reward.name=z",
                             "trainer.max_completion_length=4"])  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        warn_long_prompts(tok, model, [{"prompt": "123456"}], cfg)
    message = str(caught[0].message)
    assert "max_prompt_length" not in message
    assert message.endswith("drop or shorten the long prompts in the data (or data.instruction "
                            "/ data.system_prompt), or lower trainer.max_completion_length")  # fmt: skip


# --- flexent eval -------------------------------------------------------------------------


def test_eval_max_samples_zero_and_an_unknown_benchmark(env, tmp_path, capsys):
    root, _ = env
    out = tmp_path / "out"
    base = ["eval", str(root / "model"), "--out", str(out)]
    line = one_line(capsys, [*base, "-b", str(root / "data.jsonl"), "--max-samples", "0"], "eval")
    assert line == "flexent eval: --max-samples must be >= 1, got 0"
    start = time.monotonic()
    line = one_line(capsys, [*base, "-b", "nosuchbench"], "eval")
    assert time.monotonic() - start < 5  # no hub retries (26 s before)
    assert line.startswith("flexent eval: unknown data source 'nosuchbench': not a file, a local "
                           "dataset directory, a built-in benchmark (aime24,")  # fmt: skip
    assert line.endswith("a Hugging Face hub dataset is named owner/name")
    assert not out.exists()


def test_eval_reads_the_reward_off_the_columns(env, tmp_path, capsys):
    """A countdown file without --reward is scored with countdown (not math with a \\boxed{}
    instruction); rows that disagree are refused with the choices; prompts longer than the
    model's context get one warning."""
    root, _ = env
    out = tmp_path / "out"
    argv = ["eval", str(root / "model"), "-b", str(root / "data.jsonl"), "--max-samples", "2",
            "-k", "1", "--max-new-tokens", "520", "--out", str(out), "--no-progress"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        "flexent eval: data: scored with the countdown reward (its rows have countdown's numbers "
        "and target columns; --reward to choose another)" in err
    )
    assert (
        "flexent eval: warning: 2 of 2 prompts do not fit the model's context with the "
        "completion: longest prompt"
        in err
        and "--max-new-tokens 520 > max_position_embeddings 512" in err
    )
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["data"]["reward"] == "countdown"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"prompt": "1 2>3=", "answer": "1+2", "numbers": [1, 2], "target": 3}\n'
                     '{"prompt": "1+1=", "answer": "2"}\n')  # fmt: skip
    line = one_line(capsys, ["eval", str(root / "model"), "-b", str(mixed), "--out",
                             str(tmp_path / "o2")], "eval")  # fmt: skip
    assert line == (
        f"flexent eval: {mixed}: cannot tell which reward scores its rows (some carry a task's "
        "columns, some do not); pass --reward, one of ['arithmetic', 'countdown', 'format', "
        "'math'] or a dotted import path"
    )
    assert not (tmp_path / "o2").exists()


# --- flexent sweep ------------------------------------------------------------------------


def test_report_only_without_a_finished_run_leaves_nothing(env, tmp_path, capsys):
    _, cfg = env
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {cfg}\nout: {tmp_path / 'out'}\n")
    start = time.monotonic()
    line = one_line(capsys, ["sweep", str(spec), "--report-only"], "sweep")
    assert line == f"flexent sweep: sweep 's': no finished run in {tmp_path / 'out'}"
    assert time.monotonic() - start < 5
    assert not (tmp_path / "out").exists()


def test_sweep_progress_says_nothing_of_an_evaluation_that_was_off(tmp_path):
    from flexent.commands.sweep import _line
    from flexent.sweep.runner import Outcome
    from flexent.sweep.spec import RunSpec

    run = tmp_path / "static" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "entropy/mean": 0.5, "reward/mean": 0.25}\n')
    outcome = Outcome(RunSpec("static", 0, run, ()), "done", 12.0)
    assert _line(outcome) == "done   static/seed0 in 12 s: entropy 0.500, reward 0.250"
    (run / "eval.json").write_text('{"final": {"accuracy": 0.75}}')
    assert _line(outcome).endswith("reward 0.250, held-out accuracy 0.750")


# --- a finished run, a torn metrics line --------------------------------------------------


def test_resuming_a_finished_run_says_so_without_loading_the_model(env, tmp_path):
    """A complete run: one line, exit 0, no model load. Without final/ (killed during the
    final save) the resume completes it, and a torn last metrics line is a one-line warning,
    not Python's UserWarning with a source path."""
    _, cfg = env
    run = tmp_path / "done"
    assert main(["train", str(cfg), f"output.dir={run}"]) == 0
    proc = flexent("train", str(cfg), f"output.dir={run}", "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        f"flexent train: {run} is complete (trained to trainer.max_steps=2, final results "
        "written): nothing to do" in proc.stderr
    )
    assert "Loading weights" not in proc.stderr and "Traceback" not in proc.stderr
    assert f"run directory: {run} (step 2)" in proc.stdout
    import shutil

    shutil.rmtree(run / "final")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "entropy/me')  # a killed writer
    proc = flexent("train", str(cfg), f"output.dir={run}", "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checkpoint-2 is at trainer.max_steps: completing final/ and the final evaluation, " \
        "without training" in proc.stderr  # fmt: skip
    assert (
        f"flexent train: warning: {run}/metrics.jsonl:3: last line is cut short (a killed run); "
        "dropped" in proc.stderr
    )
    assert "UserWarning" not in proc.stderr and (run / "final").is_dir()


def test_one_line_warnings_keep_other_warnings_as_they_were(monkeypatch, capsys):
    import warnings

    from flexent.errors import one_line_warnings

    others: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda m, c, f, n, *a: others.append(f"{f}:{n}"))
    ours = str(Path(os.path.dirname(__import__("flexent").__file__)) / "a.py")
    with one_line_warnings("flexent x"):  # shown as Python shows a warning: via showwarning
        warnings.showwarning(UserWarning("ours\nsecond line"), UserWarning, ours, 3)
        warnings.showwarning(UserWarning("theirs"), UserWarning, "/elsewhere/lib.py", 7)
    assert capsys.readouterr().err == "flexent x: warning: ours second line\n"
    assert others == ["/elsewhere/lib.py:7"]

"""Every mistake a user can make with ``flexent train`` is one line, before any work starts.

Each case runs the real command in a subprocess (as a user would) and checks the exit status,
that stderr's last line is one ``flexent train: ...`` line naming the problem and where, that
no traceback was printed, and that no run directory was left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from tiny_support import write_train_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model, countdown-style data and a train config; returns (folder, config path)."""
    root = tmp_path_factory.mktemp("cli")
    return root, write_train_env(root)


def flexent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "flexent", *args], capture_output=True, text=True, env=env,
        cwd=cwd, timeout=300,
    )  # fmt: skip


def one_line_failure(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.replace("\r", "\n").splitlines() if x.strip()]
    assert lines and lines[-1].startswith("flexent train: "), proc.stderr[-2000:]
    return lines[-1]


def write(root: Path, name: str, text: str | bytes) -> Path:
    path = root / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


CASES = [
    # (id, extra overrides, a file to write first (name, content) or None, expected in message)
    ("bad-row", ["data.source={root}/bad.jsonl"],
     ("bad.jsonl", '{"prompt": "1 2>3=", "answer": "1+2", "numbers": [1, 2], "target": 3}\n{oops\n'),
     "bad.jsonl:2: invalid JSON"),
    ("missing-data", ["data.source={root}/nope.jsonl"], None, "data file not found"),
    ("binary-data", ["data.source={root}/bin.jsonl"], ("bin.jsonl", b"\xff\xfe\x00\x01garbage"),
     "bin.jsonl"),
    ("empty-data", ["data.source={root}/empty.jsonl"], ("empty.jsonl", "  \n\n"), "no prompts"),
    ("no-target", ["data.source={root}/nt.jsonl"],
     ("nt.jsonl", '{"prompt": "1 2>3=", "answer": "1+2", "numbers": [1, 2]}\n'),
     "lacks the column(s) ['target']"),
    ("max-samples-0", ["data.max_samples=0"], None, "data.max_samples"),
    ("phase-ratio", ["entropy_control.strategy_params.phase_ratio=2"], None,
     "entropy_control.strategy_params"),
    ("loss-params", ["entropy_control.loss_params.beta1=0.5"], None, "entropy_control.loss_params"),
    ("reward-params", ["reward.params.nope=1"], None, "reward.params"),
    ("region-schemes", ["entropy_control.region_schemes=[foo]"], None,
     "entropy_control.region_schemes"),
    ("eval-batch", ["evaluation.batch_size=0"], None, "evaluation.batch_size"),
    ("eval-max-samples", ["evaluation.max_samples=0"], None, "evaluation.max_samples"),
    ("negative-lr", ["trainer.learning_rate=-0.001"], None, "trainer.learning_rate"),
    ("max-steps-negative", ["trainer.max_steps=-5"], None, "trainer.max_steps"),
    ("max-steps-zero", ["trainer.max_steps=0"], None, "trainer.max_steps"),
    ("missing-model", ["model.path={root}/no_model"], None, "model.path"),
    ("data-params", ["data.params.digits=2"], None, "data.params"),
]  # fmt: skip


# these run as real subprocesses; the others in-process through flexent.cli.main (the same
# code path, without paying the interpreter start-up and imports for each case)
SUBPROCESS = {"bad-row", "missing-model", "empty-data", "no-target"}


@pytest.mark.parametrize(("case", "overrides", "file", "needle"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_train_mistakes_are_one_line_and_leave_nothing(env, capsys, case, overrides, file, needle):
    root, cfg = env
    if file is not None:
        write(root, *file)
    out = root / f"run-{case}"
    args = ["train", str(cfg), *(o.format(root=root) for o in overrides), f"output.dir={out}"]
    if case in SUBPROCESS:
        line = one_line_failure(flexent(*args))
    else:
        from flexent.cli import main

        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("flexent train: "), lines
        line = lines[0]
    assert needle in line
    assert not out.exists()


def test_threads_zero(env):
    _, cfg = env
    assert "--threads must be >= 1" in one_line_failure(
        flexent("train", str(cfg), "--threads", "0")
    )


def test_resume_cases(env):
    """A finished run killed during its final save resumes to completion without a step past
    max_steps; overrides may follow --resume; a changed max_steps is refused unless allowed; a
    torn metrics line and an empty strategy state file are handled."""
    import shutil

    root, cfg = env
    run = root / "resumed"
    assert flexent("train", str(cfg), f"output.dir={run}").returncode == 0
    shutil.rmtree(run / "final")
    metrics = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(metrics + '{"step": 3, "entropy/me')  # a killed writer
    proc = flexent("train", str(cfg), "--resume", f"output.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "missing keys" not in proc.stderr  # the tied lm_head is re-tied, not "missing"
    assert not (run / "checkpoint-3").exists()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]
    line = one_line_failure(flexent("train", str(cfg), "--resume", f"output.dir={run}",
                                    "trainer.max_steps=4"))  # fmt: skip
    assert "trainer.max_steps: 2 -> 4" in line and "--allow-config-change" in line
    (run / "checkpoint-2" / "flexent_state.json").write_text("")
    line = one_line_failure(flexent("train", str(cfg), "--resume", f"output.dir={run}"))
    assert "checkpoint-2/flexent_state.json:1: invalid JSON (Expecting value at column 1)" in line

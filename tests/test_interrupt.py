"""Ctrl-C and SIGTERM: ``flexent train`` stops after the current step with a checkpoint (the
end-to-end case, with the exact resume, is in test_train_e2e.py), a second signal stops at
once, and ``flexent sweep`` / ``flexent demo`` pass the signal on to their runs and exit with
the same status, the sweep staying resumable."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("trl")

from flexent.errors import Interrupted
from flexent.integrations.trl.callbacks import StopOnSignal
from flexent.sweep import runner
from flexent.sweep.spec import RunSpec


def test_the_first_signal_in_training_stops_after_the_step_and_a_second_at_once():
    notes: list[str] = []
    stop = StopOnSignal(notes.append)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    stop.on_train_begin(None, None, control)
    stop.on_step_end(None, None, control)
    assert not control.should_save and not control.should_training_stop
    stop._handle(signal.SIGTERM, None)
    assert stop.signum == signal.SIGTERM
    assert notes == ["SIGTERM: stopping after the current optimizer step, with a checkpoint "
                     "(again to stop at once)"]  # fmt: skip
    stop._handle(signal.SIGTERM, None)  # the same request again at once (group + parent)
    stop.on_step_end(None, None, control)
    assert control.should_save and control.should_training_stop
    stop._last -= StopOnSignal.DUPLICATE_S  # a second Ctrl-C, later
    with pytest.raises(Interrupted) as caught:
        stop._handle(signal.SIGINT, None)
    assert caught.value.exit_code == 130 and caught.value.name == "SIGINT"


def test_a_signal_outside_training_stops_at_once():
    stop = StopOnSignal()
    with pytest.raises(Interrupted) as caught:  # the model loading, an evaluation
        stop._handle(signal.SIGTERM, None)
    assert caught.value.exit_code == 143
    stop.on_train_begin(None, None, None)
    stop.on_train_end(None, None, None)
    stop._last -= StopOnSignal.DUPLICATE_S
    with pytest.raises(Interrupted):  # the final save and evaluation
        stop._handle(signal.SIGINT, None)


def test_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = StopOnSignal()
    with stop.installed():
        assert signal.getsignal(signal.SIGINT) == stop._handle
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# A stand-in for `flexent train`: it sends SIGINT to its parent (the sweep) as a user's Ctrl-C
# would reach it, then waits for the signal to be passed on, writes a checkpoint and exits 130
# as flexent train does; it counts the signals it got.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    run = Path(sys.argv[1])
    run.mkdir(parents=True, exist_ok=True)
    got = []

    def handle(signum, frame):
        got.append(signum)

    signal.signal(signal.SIGINT, handle)
    os.kill(os.getppid(), signal.SIGINT)
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # any further signal would arrive meanwhile
    (run / "checkpoint-3").mkdir()
    (run / "signals.txt").write_text(" ".join(map(str, got)))
    sys.exit(130)
    """
)


def test_the_sweep_passes_the_signal_on_and_stays_resumable(tmp_path, monkeypatch):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    monkeypatch.setattr(
        runner, "train_command",
        lambda config, run, **kw: [sys.executable, str(script), str(run.run_dir)],
    )  # fmt: skip
    runs = [RunSpec(arm, 0, tmp_path / arm / "seed0", ()) for arm in ("static", "id")]
    seen = []
    with pytest.raises(Interrupted) as caught:
        runner.execute(Path("base.yaml"), runs, tmp_path, on_done=seen.append)
    assert caught.value.signum == signal.SIGINT and caught.value.exit_code == 130
    assert [(o.run.arm, o.status) for o in seen] == [("static", "interrupted")]  # id not started
    static = tmp_path / "static" / "seed0"
    assert (static / "signals.txt").read_text() == str(int(signal.SIGINT))  # passed on once
    assert json.loads((static / "sweep_run.json").read_text()) == {
        "status": "interrupted",
        "rc": 130,
    }
    assert not (tmp_path / "id").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sweep_and_demo_commands_exit_with_the_signals_status(tmp_path, monkeypatch, capsys):
    from flexent.cli import main

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    base = tmp_path / "base.yaml"
    base.write_text(
        "model: {path: m}\ndata: {source: d.jsonl}\nreward: {name: math}\n"
        "trainer: {steps_per_generation: 2}\n"  # not inert: the sweep refuses inert runs
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {base}\nout: {tmp_path / 'out'}\n")
    monkeypatch.setattr("flexent.commands.sweep._execute", interrupted)
    assert main(["sweep", str(spec), "--jobs", "2"]) == 143
    assert capsys.readouterr().err == (
        "flexent sweep: SIGTERM: stopped; finished runs are kept and interrupted ones resume "
        f"from their last checkpoint with: flexent sweep {spec} --jobs 2\n"
    )
    monkeypatch.setattr("flexent.commands.demo.run_demo", interrupted)
    assert main(["demo", "--run-dir", str(tmp_path / "demo")]) == 143
    assert capsys.readouterr().err.startswith("flexent demo: SIGTERM: stopped; each arm's run")


def test_a_ctrl_c_anywhere_else_is_one_line(monkeypatch, capsys):
    """Before a command installs its handlers (imports, config loading), Ctrl-C is Python's
    KeyboardInterrupt: one line and exit 130, not a traceback."""
    from flexent.cli import main
    from flexent.commands import report

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "run", interrupted)
    assert main(["report", "x", "--out", "y"]) == 130
    assert capsys.readouterr().err == "flexent report: SIGINT: stopped\n"

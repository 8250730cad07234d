"""``flexent sweep``: spec parsing and expansion, validation before any run, the seed statistics,
and an end-to-end sweep of tiny runs (resume, failure isolation, dry run, report)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import yaml

import flexent.demo  # noqa: F401  (registers `base: demo`)
from flexent.sweep import SpecError, load_spec, validate_runs
from flexent.sweep.results import window_mean
from flexent.sweep.stats import diff_interval, mean_interval, ratio_interval
from tiny_support import save_tiny_model

BASE = """
model: {path: some/model}
data: {source: data.jsonl, split: null}
reward: {name: countdown}
trainer: {max_steps: 4, steps_per_generation: 2}
"""


def write(tmp_path: Path, spec: str, base: str = BASE) -> Path:
    (tmp_path / "base.yaml").write_text(textwrap.dedent(base))
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(spec))
    return path


# --- spec -----------------------------------------------------------------------------------


def test_groups_cross_the_grid_and_seeds(tmp_path):
    path = write(
        tmp_path,
        """
        base: base.yaml
        out: out
        overrides: {trainer.max_steps: 3}
        groups:
          static: {entropy_control.strategy: static}
          clip-higher: {entropy_control.thresholds.eps_std: [0.2, 0.28]}
        grid:
          trainer.num_iterations: [1, 2]
          entropy_control.thresholds.upper: [[-0.25, 0.5], 0.28]
        seeds: [0, 3]
        baseline: static
        """,
    )
    spec = load_spec(path)
    arms = spec.arms()
    assert [a.name for a in arms][:2] == [
        "static__num_iterations=1__upper=-0.25_0.5",
        "static__num_iterations=1__upper=0.28",
    ]
    assert len(arms) == 2 * 2 * 2
    runs = spec.runs()
    assert len(runs) == 8 * 2
    run = next(r for r in runs if r.arm == "clip-higher__num_iterations=2__upper=0.28")
    assert run.seed == 0 and run.run_dir == Path("out") / run.arm / "seed0"
    assert run.overrides == (
        "trainer.max_steps=3",
        "entropy_control.thresholds.eps_std=[0.2, 0.28]",  # a list is a value in a group
        "trainer.num_iterations=2",
        "entropy_control.thresholds.upper=0.28",
        "trainer.seed=0",
        "output.dir=out/clip-higher__num_iterations=2__upper=0.28/seed0",
    )
    # compared within the same grid cell
    assert spec.baseline_of(next(a for a in arms if a.name == run.arm)) == (
        "static__num_iterations=2__upper=0.28"
    )
    validate_runs(spec, runs)  # every run's config builds


def test_a_grid_axis_sets_several_keys_together(tmp_path):
    path = write(
        tmp_path,
        """
        base: base.yaml
        grid:
          regime:
            - {trainer.num_iterations: 1, trainer.max_steps: 8}
            - {trainer.num_iterations: 2, trainer.max_steps: 16}
          entropy_control.strategy: [static, id]
        """,
    )
    spec = load_spec(path)
    assert [a.name for a in spec.arms()] == [
        "regime=1_8__strategy=static", "regime=1_8__strategy=id",
        "regime=2_16__strategy=static", "regime=2_16__strategy=id",
    ]  # fmt: skip
    assert spec.arms()[3].overrides == {
        "trainer.num_iterations": 2, "trainer.max_steps": 16, "entropy_control.strategy": "id"
    }  # fmt: skip
    with pytest.raises(SpecError, match=r"grid.regime\[0\] must be a mapping"):
        load_spec(write(tmp_path, "base: base.yaml\ngrid: {regime: [1, 2]}\n"))


def test_demo_bootstrap_takes_the_warm_up_settings(tmp_path):
    spec = load_spec(write(tmp_path, "base: demo\nbootstrap: {sft_epochs: 5.0, n_train: 500}\n"))
    assert spec.bootstrap == {"sft_epochs": 5.0, "n_train": 500}


def test_a_named_base_is_whatever_registered_it(tmp_path, monkeypatch):
    """The sweep imports no base's module: `base: NAME` is the config and setup registered
    under NAME (the demo registers `demo`)."""
    from dataclasses import dataclass

    from flexent.sweep import NamedBase, bases

    @dataclass
    class Toy:
        size: int = 1

        def overrides(self, cache: Path) -> dict[str, str]:
            return {"data.source": str(cache / f"toy{self.size}.jsonl")}

        def prepared(self, cache: Path) -> bool:
            return False

        def prepare(self, cache: Path) -> dict[str, str]:
            return self.overrides(cache)

    path = write(tmp_path, "base: toy\nbootstrap: {size: 3}\n")
    monkeypatch.setitem(bases._BASES, "toy", NamedBase(tmp_path / "base.yaml", lambda d: Toy(**d)))
    spec = load_spec(path)
    assert spec.base_config() == tmp_path / "base.yaml" and spec.setup() == Toy(3)
    assert (
        spec.runs(spec.setup().overrides(Path("c")))[0].overrides[0] == "data.source=c/toy3.jsonl"
    )
    with pytest.raises(SpecError, match=r"\['data.source'\] are set by base: toy"):
        load_spec(write(tmp_path, "base: toy\noverrides: {data.source: x}\n"))
    with pytest.raises(SpecError, match=r"bootstrap: .*unexpected keyword argument 'sise'"):
        load_spec(write(tmp_path, "base: toy\nbootstrap: {sise: 3}\n"))


def test_grid_alone_names_arms_by_values(tmp_path):
    path = write(tmp_path, "base: base.yaml\ngrid: {entropy_control.strategy: [static, id]}\n")
    spec = load_spec(path)
    assert [a.name for a in spec.arms()] == ["strategy=static", "strategy=id"]
    assert spec.out == Path("runs/sweeps/spec") and spec.seeds == [0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: base.yaml\ngrids: {}\n", r"unknown key\(s\) \['grids'\]"),
        ("grid: {trainer.seed: [1]}\n", "base is required"),
        ("base: nope.yaml\n", "base config not found"),
        (
            "base: base.yaml\ngrid: {entropy_control.strategy: []}\n",
            "grid.entropy_control.strategy is empty",
        ),
        (
            "base: base.yaml\ngrid: {entropy_control.strategy: id}\n",
            "must be a list of alternatives",
        ),
        ("base: base.yaml\noverrides: {max_steps: 3}\n", "'max_steps' is not a dotted config key"),
        ("base: base.yaml\noverrides: {output.dir: x}\n", "set by the sweep"),
        ("base: base.yaml\nseeds: [0, 0]\n", "seeds repeat"),
        ("base: base.yaml\nseeds: []\n", "non-empty list"),
        ("base: base.yaml\ngroups: {a: {}}\nbaseline: b\n", "baseline 'b' is not a group"),
        ("base: base.yaml\nbootstrap: {n_numbers: 3}\n", "bootstrap is only for base: demo"),
        ("base: demo\nbootstrap: {n_number: 3}\n", r"unknown key\(s\) \['n_number'\]"),
        ("base: demo\noverrides: {model.path: x}\n", "set by base: demo"),
        ("name: a b\nbase: base.yaml\n", "simple file name"),
        ("base: [base.yaml\n", "invalid YAML"),
    ],
)
def test_bad_specs_name_the_key(tmp_path, text, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, text))


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ("{entropy_control.strategy: idd}", r"arm 'bad'.*entropy_control\.strategy.*'idd'"),
        ("{trainer.lerning_rate: 0.1}", r"arm 'bad'.*trainer\.lerning_rate"),
        ("{entropy_control.stratgy: id}", r"arm 'bad'.*entropy_control\.stratgy"),
        ("{trainer.loss_type: cispo}", r"arm 'bad'.*loss_type='cispo' is a TRL loss"),
        ("{trainer.steps_per_generation: 1}", r"arm 'bad'.*clipping is inert"),
    ],
)
def test_bad_values_fail_before_any_run(tmp_path, group, message):
    spec = load_spec(write(tmp_path, f"base: base.yaml\ngroups: {{ok: {{}}, bad: {group}}}\n"))
    with pytest.raises(SpecError, match=message):
        validate_runs(spec, spec.runs())


def test_cli_reports_a_bad_spec_in_one_line(tmp_path, capsys):
    from flexent.cli import main

    path = write(tmp_path, "base: base.yaml\ngrid: {entropy_control.strategy: [static, idd]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "entropy_control.strategy" in err[0] and "'idd'" in err[0]
    assert not (tmp_path / "o").exists()  # nothing started, nothing written


# --- statistics -------------------------------------------------------------------------------


def test_mean_interval_by_hand():
    # mean 0.3, sample sd = 0.1, t(0.975, 2) = 4.303: half-width 4.303 * 0.1 / sqrt(3) = 0.2484
    iv = mean_interval([0.2, 0.3, 0.4])
    assert iv.value == pytest.approx(0.3) and iv.n == 3
    assert (iv.lo, iv.hi) == pytest.approx((0.3 - 0.24844, 0.3 + 0.24844), abs=1e-4)
    assert math.isnan(mean_interval([0.5]).lo) and mean_interval([]).n == 0


def test_welch_difference_by_hand():
    # a: mean 2, var 1 (n 4); b: mean 0, var 4 (n 4): se^2 = 1/4 + 4/4 = 1.25,
    # df = 1.25^2 / ((1/4)^2/3 + 1^2/3) = 4.41 -> 4, t = 2.776, half = 2.776 * sqrt(1.25) = 3.104
    a = [2 - math.sqrt(0.75), 2 + math.sqrt(0.75), 2 - math.sqrt(0.75), 2 + math.sqrt(0.75)]
    b = [-math.sqrt(3), math.sqrt(3), -math.sqrt(3), math.sqrt(3)]
    iv = diff_interval(a, b)
    assert iv.value == pytest.approx(2.0)
    assert (iv.lo, iv.hi) == pytest.approx((2 - 3.1037, 2 + 3.1037), abs=1e-3)


def test_ratio_interval_is_a_welch_interval_on_the_log_ratio():
    iv = ratio_interval([0.6, 0.62, 0.58], [0.3, 0.31, 0.29])
    assert iv.value == pytest.approx(2.0)
    # by hand: s^2 = 0.0004 and 0.0001, n = 3: u_a = 0.0004 / 3 / 0.36, u_b = 0.0001 / 3 / 0.09,
    # equal (1 / 2700), so df = (2u)^2 / (2 u^2 / 2) = 4; t_{0.975, 4} = 2.776
    half = 2.776 * (2 / 2700) ** 0.5
    assert (iv.lo, iv.hi) == pytest.approx((2 * math.exp(-half), 2 * math.exp(half)), rel=1e-9)
    assert iv.excludes(1.0)
    assert not ratio_interval([0.3, 0.6], [0.5, 0.4]).excludes(1.0)
    # 3 seeds that a percentile bootstrap would call decisive (every resampled ratio > 1) but
    # whose spread leaves 1 inside a t-interval
    # (the smallest resampled ratio is 0.40 / 0.32 = 1.25): by hand lo = 0.907, hi = 2.68
    wide = ratio_interval([0.40, 0.45, 0.60], [0.30, 0.31, 0.32])
    assert wide.value == pytest.approx(0.4833333 / 0.31) and wide.lo < 1.0 < wide.hi
    assert math.isnan(ratio_interval([0.5], [0.4, 0.3]).lo)  # one seed: no interval


def test_window_mean_ends_at_the_fraction():
    values = [float(i) for i in range(100)]  # window of 5 values ending at index 50 (excl.)
    assert window_mean(values, 0.5) == pytest.approx(sum(range(45, 50)) / 5)
    assert window_mean(values, 1.0) == pytest.approx(sum(range(95, 100)) / 5)


# --- end to end on tiny runs ---------------------------------------------------------------

REWARDS = """
def length_parity(completions, **kwargs):
    return [float(len(c) % 2 == 0) for c in completions]


def broken(completions, **kwargs):
    raise RuntimeError("reward exploded")
"""


@pytest.fixture
def tiny_sweep(tmp_path, monkeypatch):
    """A base config on a tiny offline Qwen2 and a 2 arms x 2 seeds spec (2 steps per run)."""
    pytest.importorskip("trl")
    save_tiny_model(tmp_path / "model", alphabet="0123456789+-*/=() ")
    (tmp_path / "sweep_rewards.py").write_text(REWARDS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the runs are subprocesses
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = [{"prompt": f"{i} {i + 1}=", "answer": str(2 * i + 1)} for i in range(8)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = f"""
        model: {{path: {tmp_path / "model"}}}
        data: {{source: {tmp_path / "data.jsonl"}, split: null}}
        reward: {{name: sweep_rewards.length_parity}}
        trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4,
                   steps_per_generation: 2, max_completion_length: 4, save_steps: 1,
                   use_cpu: true, learning_rate: 0.01, report_to: []}}
        evaluation: {{enabled: true, source: {tmp_path / "data.jsonl"}, split: null,
                      max_samples: 4, num_samples: 2, temperature: 1.0, at_start: false}}
        """
    spec = f"""
        base: base.yaml
        out: {tmp_path / "sweep"}
        groups:
          static: {{entropy_control.strategy: static}}
          id: {{entropy_control.strategy: id}}
        seeds: [0, 1]
        baseline: static
        """
    return write(tmp_path, spec, base), tmp_path / "sweep"


def test_sweep_runs_resumes_and_reports(tiny_sweep, capsys):
    from flexent.cli import main

    spec, out = tiny_sweep
    assert main(["sweep", str(spec), "--jobs", "2", "--threads", "1"]) == 0
    lines = capsys.readouterr().out  # one line per run on stdout, the bar on stderr
    assert lines.count("done   ") == 4 and "id/seed1" in lines
    for arm in ("static", "id"):
        for seed in (0, 1):
            run = out / arm / f"seed{seed}"
            assert json.loads((run / "sweep_run.json").read_text())["status"] == "done"
            cfg = (run / "config.yaml").read_text()
            assert f"strategy: {arm}" in cfg and f"seed: {seed}" in cfg
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert set(summary) == {"static", "id"} and summary["id"]["seeds"] == 2
    assert len(summary["id"]["values"]["final pass@2"]) == 2
    report = (out / "report" / "report.md").read_text()
    assert "## Against `static`" in report and "![entropy](entropy.png)" in report
    assert (out / "report" / "entropy.png").is_file()
    # a focused report of some arms, elsewhere; unknown arms and misplaced flags are one line
    focus = out / "focus"
    assert main(["sweep", str(spec), "--report-only", "--arms", "id", "--report-dir",
                 str(focus)]) == 0  # fmt: skip
    assert set(json.loads((focus / "summary.json").read_text())) == {"id"}
    assert "Arms shown: `id`." in (focus / "report.md").read_text()
    # the same arms against another baseline: static's entropy over id's
    assert main(["sweep", str(spec), "--report-only", "--arms", "id", "static", "--baseline",
                 "id", "--report-dir", str(focus)]) == 0  # fmt: skip
    text = (focus / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| static | id |"))
    h = {a: summary[a]["values"]["entropy@50%"] for a in ("static", "id")}
    ratio = (sum(h["static"]) / 2) / (sum(h["id"]) / 2)
    assert "## Against `id`" in text and row.split(" | ")[3].startswith(f"{ratio:.3f} [")
    capsys.readouterr()
    assert main(["sweep", str(spec), "--report-only", "--baseline", "nope"]) == 2
    assert "--baseline: unknown arm 'nope'" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--report-only", "--arms", "nope"]) == 2
    assert "--arms: unknown arm(s) ['nope']" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--arms", "id"]) == 2
    assert "go with --report-only" in capsys.readouterr().err

    # id/seed1 killed during its final evaluation: checkpoint-2 (= max_steps) but not done;
    # static/seed0 killed before its first checkpoint: a directory with no checkpoint.
    killed = out / "id" / "seed1"
    (killed / "sweep_run.json").unlink()
    before = (killed / "metrics.jsonl").read_text()
    early = out / "static" / "seed0"
    for child in early.iterdir():
        if child.name != "config.yaml":
            _rm(child)
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    dry = capsys.readouterr().out.strip().splitlines()
    assert len(dry) == 2 and all(line.startswith("flexent train ") for line in dry)
    assert sum(line.endswith("--resume") for line in dry) == 1

    assert main(["sweep", str(spec)]) == 0
    err = capsys.readouterr().out
    assert err.count("skip   ") == 2 and err.count("done   ") == 2
    assert "--resume" in (out / "logs" / "id__seed1.log").read_text()
    assert (killed / "metrics.jsonl").read_text() == before  # no step past max_steps
    assert not (killed / "checkpoint-3").exists()
    assert json.loads((early / "sweep_run.json").read_text())["status"] == "done"


def test_a_failed_run_is_reported_and_the_others_finish(tiny_sweep, capsys):
    from flexent.cli import main

    spec, out = tiny_sweep
    text = (
        spec.read_text()
        .replace(
            "id: {entropy_control.strategy: id}", "broken: {reward.name: sweep_rewards.broken}"
        )
        .replace("seeds: [0, 1]", "seeds: [0]")
    )
    spec.write_text(text)
    assert main(["sweep", str(spec)]) == 1
    err = capsys.readouterr().out
    assert "FAILED broken/seed0" in err and "reward exploded" in err
    assert "done   static/seed0" in err
    assert (out / "report" / "report.md").is_file()


def _rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (Path(__file__).parents[1] / "configs" / "sweeps").glob("*.yaml")),
)
def test_committed_specs_expand_to_valid_runs(name):
    """The study specs of docs/replication.md: every run's config builds (no model needed)."""
    pytest.importorskip("trl")
    spec = load_spec(Path(__file__).parents[1] / "configs" / "sweeps" / name)
    setup = spec.setup()
    runs = spec.runs(setup.overrides(Path("cache")) if setup else None)
    validate_runs(spec, runs)
    expected = {
        "regime.yaml": 28, "replication.yaml": 45, "recheck.yaml": 9, "smollm2.yaml": 9,
        "smollm2_t1.yaml": 6, "gradnorm.yaml": 6, "controllers.yaml": 69,
    }  # fmt: skip
    assert len(runs) == expected[name]


def test_seed_major_starts_every_arm_of_a_seed_before_the_next_seed(tmp_path, capsys):
    """`--seed-major` on the controllers spec: the dry run lists the 23 arms' seed 1 in the
    spec's order, then their seed 2, then seed 3 (read from the YAML, not from flexent)."""
    pytest.importorskip("trl")
    from flexent.cli import main

    spec = Path(__file__).parents[1] / "configs" / "sweeps" / "controllers.yaml"
    raw = yaml.safe_load(spec.read_text())
    arms, seeds = list(raw["groups"]), raw["seeds"]
    assert main(["sweep", str(spec), "--dry-run", "--seed-major", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    dirs = [line.split("output.dir=")[1].split()[0] for line in lines if "output.dir=" in line]
    assert dirs == [str(tmp_path / arm / f"seed{s}") for s in seeds for arm in arms]


def test_the_t1_spec_measures_the_smollm2_sweeps_first_steps():
    """configs/sweeps/smollm2_t1.yaml says it runs the first 8 steps of smollm2.yaml's schedule
    at temperature 1 without truncation: hold it to that."""
    root = Path(__file__).parents[1] / "configs" / "sweeps"
    main, t1 = load_spec(root / "smollm2.yaml"), load_spec(root / "smollm2_t1.yaml")
    assert t1.base == main.base and t1.seeds == main.seeds
    for key in ("model.path", "trainer.learning_rate", "entropy_control.log_pred_dh_full"):
        assert t1.overrides[key] == main.overrides[key], key
    assert (t1.overrides["trainer.temperature"], t1.overrides["trainer.top_p"]) == (1.0, 1.0)
    assert t1.overrides["trainer.top_k"] == 0
    for arm in ("static", "id"):
        assert (
            t1.groups[arm]["entropy_control.strategy"]
            == main.groups[arm]["entropy_control.strategy"]
        )
        total = t1.groups[arm]["entropy_control.strategy_params"]["total_steps"]
        assert total == main.overrides["trainer.max_steps"]


def test_the_gradnorm_spec_trains_as_the_replication():
    """configs/sweeps/gradnorm.yaml says it copies replication.yaml's training setting."""
    root = Path(__file__).parents[1] / "configs" / "sweeps"
    replication, grad = load_spec(root / "replication.yaml"), load_spec(root / "gradnorm.yaml")
    assert grad.base == replication.base and grad.seeds == replication.seeds
    training = {k: v for k, v in replication.overrides.items() if not k.startswith("evaluation.")}
    assert {k: v for k, v in grad.overrides.items() if k != "evaluation.enabled"} == training
    assert all(grad.groups[g] == replication.groups[g] for g in grad.groups)


def test_the_recheck_spec_repeats_the_replication_on_other_seeds():
    """configs/sweeps/recheck.yaml says it copies replication.yaml's setting: hold it to that."""
    root = Path(__file__).parents[1] / "configs" / "sweeps"
    replication, recheck = load_spec(root / "replication.yaml"), load_spec(root / "recheck.yaml")
    assert recheck.overrides == replication.overrides and recheck.base == replication.base
    assert all(recheck.groups[g] == replication.groups[g] for g in recheck.groups)
    assert not set(recheck.seeds) & set(replication.seeds)

"""flexent report on synthetic runs: figures are valid PNGs, gaps are notes, bad lines fail."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flexent.cli import main
from flexent.report import MetricsFormatError, make_report, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

REGION_KEYS = [
    f"region/E{i}/{s}" for i in range(1, 5) for s in ("share", "pred_dH", "pred_dH_clipped")
]
ALL_KEYS = [
    "reward/mean",
    "entropy/mean",
    "clip/eps_high_mean",
    "clip/eps_low_mean",
    "clip/frac_high",
    "clip/frac_low",
    "control/w_up",
    "control/w_low",
    "control/target",
    *REGION_KEYS,
]


def _record(step: int, keys: list[str]) -> dict[str, float]:
    rec: dict[str, float] = {"step": step}
    for j, key in enumerate(keys):
        rec[key] = 0.5 + 0.4 * math.sin(0.3 * step + j)
    if "clip/frac_low" in keys:
        rec["clip/frac_low"] = 10.0 ** (-1 - 3 * step / 40)  # spans 3 decades -> log axis
    if "entropy/mean" in keys:
        rec["entropy/mean"] = float(step)  # entropy == step, for the summary check
    return rec


def _write_run(
    root: Path, name: str, keys: list[str], *, steps: int = 40, strategy: str | None = None
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    lines = [json.dumps(_record(s, keys)) for s in range(1, steps + 1)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if strategy:
        (run / "config.yaml").write_text(f"entropy_control:\n  strategy: {strategy}\n")
    return run


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000


def _results(samples: int, counts: list[int]) -> dict:
    ks = [1, 2, 4][: {1: 1, 2: 2, 4: 3}[samples]]
    metrics = {f"mean@{samples}": sum(counts) / (samples * len(counts))}
    metrics.update({f"pass@{k}": 0.1 * k for k in ks})
    metrics[f"maj@{samples}"] = 0.2
    bench = {
        "source": "x.jsonl",
        "reward": "math",
        "num_problems": len(counts),
        "metrics": metrics,
        "problems": [{"index": i, "n": samples, "correct": c} for i, c in enumerate(counts)],
    }
    return {
        "format": "flexent-eval/1",
        "model": "m",
        "backend": "transformers",
        "samples": samples,
        "ks": ks,
        "sampling": {},
        "benchmarks": {"x": bench},
        "average": metrics,
    }


def test_full_report_two_runs(tmp_path):
    a = _write_run(tmp_path, "run_a", ALL_KEYS, strategy="did")
    b = _write_run(tmp_path, "run_b", ALL_KEYS, steps=20)
    (a / "eval").mkdir()
    (a / "eval" / "results.json").write_text(json.dumps(_results(4, [1, 3])))
    out = tmp_path / "report"
    report = make_report([a, b], out)
    expected = [
        "entropy",
        "reward",
        "thresholds",
        "clip_fraction",
        "region_share",
        "region_pred_dH",
        "region_pred_dH_clipped",
        "control",
        "pass_at_k",
    ]
    assert [p.name for p in report.figures] == [f"{n}.png" for n in expected]
    for name in expected:
        assert _is_png(out / f"{name}.png"), name
    assert report.notes == []
    text = report.report.read_text()
    for name in expected:
        assert f"]({name}.png)" in text
    # Summary row of run_a: 40 steps, entropy == step -> nearest logged steps to 10, 20, 30, 40;
    # eval acc = mean@4 = (1 + 3) / (4 * 2) = 0.5; legend label carries the strategy.
    row = next(line for line in text.splitlines() if line.startswith("| run_a |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["run_a", "did", "40"]
    assert cells[4] == "0.5"
    assert cells[5:9] == ["10", "20", "30", "40"]
    # run_b has 20 steps: entropy at 25% -> step 5.
    row_b = next(line for line in text.splitlines() if line.startswith("| run_b |"))
    assert [c.strip() for c in row_b.strip("|").split("|")][5] == "5"


def test_missing_metrics_are_skipped_with_notes(tmp_path):
    run = _write_run(tmp_path, "bare", ["reward/mean", "entropy/mean", "clip/frac_high"])
    report = make_report([run], tmp_path / "out")
    assert sorted(p.name for p in report.figures) == [
        "clip_fraction.png",
        "entropy.png",
        "reward.png",
    ]
    for p in report.figures:
        assert _is_png(p)
    assert not (tmp_path / "out" / "control.png").exists()
    joined = "\n".join(report.notes)
    assert "no run logs `clip/frac_low`; panel skipped" in joined
    assert "no run logs `control/w_up`" in joined
    assert "no eval results" in joined
    assert "## Notes" in report.report.read_text()


def test_run_missing_a_metric_others_have_is_noted(tmp_path):
    a = _write_run(tmp_path, "a", ["entropy/mean", "reward/mean"])
    b = _write_run(tmp_path, "b", ["entropy/mean"])
    report = make_report([a, b], tmp_path / "out")
    assert "`reward.png`: `reward/mean` missing in b" in report.notes


def test_a_torn_last_line_is_dropped_and_corruption_elsewhere_names_the_line(tmp_path):
    run = _write_run(tmp_path, "bad", ["entropy/mean"], steps=3)
    path = run / "metrics.jsonl"
    with path.open("a") as fh:
        fh.write('{"step": 4, "entropy/mean": 0.3')  # line 4: the torn write of a killed run
    report = make_report([run], tmp_path / "out")
    assert any("metrics.jsonl:4: last line is cut short" in n for n in report.notes)
    assert [r["step"] for r in read_metrics(path)] == [1.0, 2.0, 3.0]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], '{"step": 2, "entr', *lines[2:]]) + "\n")
    with pytest.raises(MetricsFormatError, match=r"bad/metrics\.jsonl:2: invalid JSON"):
        make_report([run], tmp_path / "out")


def test_read_metrics_rules(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 2, "a": 1.0, "note": "text", "b": null}\n'
        "\n"
        '{"step": 1, "a": 0.5}\n'
        '{"step": 2, "a": 3.0, "c": true}\n'
    )
    # Sorted by step; blank line skipped; non-numbers dropped; step 2 merged, later line wins.
    assert read_metrics(path) == [{"step": 1.0, "a": 0.5}, {"step": 2.0, "a": 3.0}]
    path.write_text('{"a": 1}\n')
    with pytest.raises(MetricsFormatError, match=r":1: missing or non-integer 'step'"):
        read_metrics(path)
    path.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(MetricsFormatError, match=":2: expected a JSON object, got list"):
        read_metrics(path)


def test_report_cli(tmp_path, capsys):
    run = _write_run(tmp_path, "cli_run", ["entropy/mean"], steps=10)
    extra = tmp_path / "other" / "results.json"
    extra.parent.mkdir()
    extra.write_text(json.dumps(_results(2, [0, 2, 1])))
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out), "--eval-results", f"base={extra}"]) == 0
    assert _is_png(out / "pass_at_k.png")
    assert "wrote 2 figures" in capsys.readouterr().out  # entropy + pass@k


def test_missing_run_dir_is_clear(tmp_path):
    from flexent.report.runs import RunDirError

    with pytest.raises(RunDirError, match="run directory not found"):
        make_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"has no metrics\.jsonl"):
        make_report([tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_exact_region_figures_appear_only_when_logged(tmp_path):
    from flexent.report import make_report

    suffixes = ("pred_dH_full", "pred_dH_full_clipped")
    full = [f"region/E{i}/{s}" for i in range(1, 5) for s in suffixes]
    with_full = _write_run(tmp_path, "with_full", ALL_KEYS + full)
    without = _write_run(tmp_path, "without", ALL_KEYS)
    report = make_report([with_full, without], tmp_path / "r1")
    names = [p.name for p in report.figures]
    assert "region_pred_dH_full.png" in names and "region_pred_dH_full_clipped.png" in names
    assert any("pred_dH_full` missing in without" in n for n in report.notes)
    report = make_report([without], tmp_path / "r2")  # nobody logs them: no figure, no note
    assert not any("full" in p.name for p in report.figures)
    assert not any("full" in n for n in report.notes)


def test_a_long_grid_title_stays_inside_the_figure(tmp_path, monkeypatch):
    """A suptitle wider than the figure was cut at both edges (the region figures' titles)."""
    import matplotlib.figure

    from flexent.report.figures import draw_grid

    seen = {}
    save = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kwargs):
        fig.canvas.draw()
        seen["title"] = fig._suptitle.get_window_extent()
        seen["figure"] = fig.bbox
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    title = "entropy change the clip removed, per region, exact first order " * 3
    draw_grid([1, 2, 3, 4], lambda ax, item: ax.plot([0, item]), tmp_path / "g.png", title=title)
    assert seen["title"].x0 >= seen["figure"].x0 and seen["title"].x1 <= seen["figure"].x1

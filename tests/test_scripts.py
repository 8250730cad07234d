"""The committed analysis scripts (scripts/): their tables against values computed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: Path, arm: str, seed: int, rows: list[dict[str, float]], done: bool = True) -> None:
    run = root / arm / f"seed{seed}"
    run.mkdir(parents=True)
    lines = [json.dumps({"step": i + 1, **row}) for i, row in enumerate(rows)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if done:
        (run / "sweep_run.json").write_text('{"status": "done"}')


def _row(e1_clip: float, e2_removed: float) -> dict[str, float]:
    row = {f"region/E{i}/{k}": 0.0 for i in range(1, 5) for k in ("share", "clip_frac")}
    row.update({f"region/E{i}/pred_dH_full{s}": 0.0 for i in range(1, 5) for s in ("", "_clipped")})
    row.update({"clip/frac_high": 0.01, "clip/frac_low": 0.03})
    row["region/E1/clip_frac"] = e1_clip
    row["region/E2/pred_dH_full_clipped"] = e2_removed
    return row


def test_region_table_means_over_steps_then_seeds(tmp_path, capsys):
    # seed 1: E1 clipped 0.1 then 0.3 (mean 0.2); seed 2: 0.4 then 0.4 (0.4) -> arm mean 0.3 = 30 %.
    # E2 removed dH: 0.002, 0.004 (0.003) and 0.001, 0.001 (0.001) -> 0.002 = +2.00 x 1e-3.
    _run(tmp_path, "a", 1, [_row(0.1, 0.002), _row(0.3, 0.004)])
    _run(tmp_path, "a", 2, [_row(0.4, 0.001), _row(0.4, 0.001)])
    _run(tmp_path, "a", 3, [_row(0.9, 0.9)], done=False)  # interrupted: left out
    _run(tmp_path, "b", 1, [_row(0.0, 0.0)])
    table = _load("region_table")
    assert table.main([str(tmp_path), "--arms", "a"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| a | 2 | 1.00 / 3.00 | 0.0 % / 30.0 % /")
    assert "0.0 % / 0.0 % / +0.00 / +2.00" in lines[2].split(" | ")[4]
    # the first half of the steps only: seed 1 -> 0.1, seed 2 -> 0.4: 25 %
    table.main([str(tmp_path), "--arms", "a", "--fraction", "0.5"])
    assert "/ 25.0 % /" in capsys.readouterr().out.splitlines()[2].split(" | ")[3]


def test_region_table_names_a_missing_arm(tmp_path):
    _run(tmp_path, "a", 1, [_row(0.1, 0.0)])
    with pytest.raises(SystemExit, match=r"no finished runs of arm\(s\) zz under"):
        _load("region_table").main([str(tmp_path), "--arms", "zz"])


def test_rescore_samples_with_the_number_fallback(tmp_path, capsys):
    # two problems x 2 samples, saved as scored without a fallback (no \boxed{} -> 0)
    rows = [
        {"benchmark": "b", "answer": "12", "scores": [0.0, 1.0],
         "completions": ["so the total is 12 apples", "\\boxed{12}"]},
        {"benchmark": "b", "answer": "7", "scores": [0.0, 0.0],
         "completions": ["it is 8", "no number here"]},
    ]  # fmt: skip
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    script = _load("rescore_samples")
    assert (
        script.main([str(path), "--reward", "math", "--reward-param", "number_fallback=true"]) == 0
    )
    out = capsys.readouterr().out
    # saved: 1 right of 4 samples (mean@2 25 %), 1 of 2 problems solved (pass@2 50 %);
    # rescored: the first problem's first sample turns right: 2 of 4 (50 %), pass@2 still 50 %
    assert "as saved:  mean@2 25.0 %" in out and "pass@2 50.0 %" in out
    assert "rescored:  mean@2 50.0 %" in out
    assert "samples wrong -> right: 1, right -> wrong: 0" in out


def test_rescore_samples_names_a_bad_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"benchmark": "b"}\n')
    with pytest.raises(SystemExit, match=r"samples.jsonl:1: missing \['answer', 'scores'"):
        _load("rescore_samples").main([str(path), "--reward", "math"])


def test_grad_norm_table_by_hand(tmp_path, capsys):
    """10 steps each; early = first 10 % = step 1. Seed 1: norms 4, 4, 0.5, 4, 4, 0.9, 4, 4,
    4, 0.5 -> early median 4, threshold 0.25 x 4 = 1: 3 of 10 steps below (0.30); second-half
    median of (0.9, 4, 4, 4, 0.5) = 4 -> late/early 1.00. Seed 2: norms 2 then nine 1.0 ->
    threshold 0.5: none below (0.00); late/early 0.50. zero-adv: means 0.2 and 0.4.
    Arm a: vanishing 0.15, late/early 0.75, zero-adv 0.30; b: one seed, 0, 1, 0.
    Difference a - b: one-seed baseline -> no interval."""
    s1 = [4, 4, 0.5, 4, 4, 0.9, 4, 4, 4, 0.5]
    s2 = [2.0] + [1.0] * 9
    _run(tmp_path, "a", 1, [{"train/grad_norm": g, "frac_reward_zero_std": 0.2} for g in s1])
    _run(tmp_path, "a", 2, [{"train/grad_norm": g, "frac_reward_zero_std": 0.4} for g in s2])
    _run(tmp_path, "b", 1, [{"train/grad_norm": 1.0, "frac_reward_zero_std": 0.0}] * 10)
    grad = _load("grad_norm_table")
    assert grad.main([str(tmp_path), "--baseline", "b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    a = lines[2].split(" | ")
    assert a[0] == "| a" and a[1] == "2"
    assert a[2].startswith("0.15 [") and a[3].startswith("0.75 [") and a[4].startswith("0.30 [")
    assert a[5].startswith("0.15") and a[6].startswith("-0.25")
    assert lines[3].split(" | ")[2:5] == ["0.00 (n=1)", "1.00 (n=1)", "0.00 (n=1)"]
    with pytest.raises(SystemExit, match="baseline 'zz'"):
        grad.main([str(tmp_path), "--baseline", "zz"])


def test_surprisal_census_helpers_by_hand():
    """Kept mass of p = (0.5, 0.3, 0.15, 0.05): top-p 0.8 keeps 0.5 + 0.3; top-k 3 keeps 0.95;
    top-k 3 then top-p 0.9 on the renormalised (0.526, 0.316, 0.158): 0.526 + 0.316 < 0.9, so
    the third is kept too: 0.95. The completion mask keeps tokens up to the first EOS."""
    import torch

    census = _load("surprisal_census")
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert float(census._kept_mass(p, 0.8, 0)) == pytest.approx(0.8)
    assert float(census._kept_mass(p, 1.0, 3)) == pytest.approx(0.95)
    assert float(census._kept_mass(p, 0.9, 3)) == pytest.approx(0.95)
    assert float(census._kept_mass(p, 1.0, 0)) == 1.0

    class Tok:
        eos_token_id, pad_token_id = 9, 0

    completion = torch.tensor([[5, 6, 9, 0, 0], [5, 9, 7, 9, 0]])
    got = census._completion_mask(completion, Tok()).tolist()
    assert got == [[True, True, True, False, False], [True, True, False, False, False]]


def _controller_run(root: Path, arm: str, seed: int, entropies: list[float], mean16: float,
                    wall: float, extra: dict[str, list[float]] | None = None) -> None:  # fmt: skip
    run = root / arm / f"seed{seed}"
    run.mkdir(parents=True)
    rows = []
    for i, h in enumerate(entropies):
        row = {"step": i + 1, "entropy/rollout": h}
        row.update({k: v[i] for k, v in (extra or {}).items()})
        rows.append(json.dumps(row))
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    final = {"metrics": {"mean@16": mean16, "pass@16": 2 * mean16}}
    (run / "eval.json").write_text(json.dumps({"final": final}))
    (run / "sweep_run.json").write_text(json.dumps({"status": "done", "wall_s": wall}))


def test_controllers_table_by_hand(tmp_path, capsys):
    # 4 steps, H_init = 1.0. hold: errors |1-1|, |0.8-1|, |0.6-1|, |0.4-1| -> mean 0.3 = 30 %;
    # 2nd half (k >= 2): (0.4 + 0.6) / 2 = 50 %. half (H* = 0.5): 0.5, 0.3, 0.1, 0.1 -> 25 %.
    # idshape at k/T = 0, .25, .5, .75: H* = 1.0, 1.25, 1.5, 1.0 -> 0, 0.45, 0.9, 0.6 -> 48.75 %.
    table = _load("controllers_table")
    falling = [1.0, 0.8, 0.6, 0.4]
    assert table.tracking_error(falling, "hold") == pytest.approx(0.3)
    assert table.tracking_error(falling, "hold", start=0.5) == pytest.approx(0.5)
    assert table.tracking_error(falling, "half") == pytest.approx(0.25)
    assert table.tracking_error(falling, "idshape") == pytest.approx(0.4875)
    # two seeds of GRPO (mean@16 0.4, 0.5; 10 s, 12 s) and of a controller holding H_init
    # (error 0; mean@16 0.3, 0.3; 11 s, 11 s, saturated on 1 step of 4): difference
    # 0.3 - 0.45 = -15 points; its error 0.0 with interval [0.0, 0.0]; wall 11 / 11 = 1.00.
    for seed, (m, w) in enumerate([(0.4, 10.0), (0.5, 12.0)], start=1):
        _controller_run(tmp_path, "static", seed, falling, m, w)
        _controller_run(tmp_path, "hold-target-bonus", seed, [1.0] * 4, 0.3, 11.0,
                        {"control/u": [0.0, 1.0, 0.5, -0.2]})  # fmt: skip
    assert table.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| target-bonus |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["2", "0.0 [0.0, 0.0]", "yes", "0.0 [0.0, 0.0]"]
    assert cells[6].startswith("-15.0 [")
    assert cells[8].startswith("1.00 [")
    use = next(line for line in out.splitlines() if line.startswith("| hold-target-bonus |"))
    assert use.split("|")[2].strip() == "0.250" and use.split("|")[3].strip() == "0.250"


def test_controllers_doc_tables_are_the_scripts_output(capsys):
    """docs/controllers.md quotes the script's tables on the committed run data verbatim."""
    pytest.importorskip("torch")
    root = Path(__file__).parents[1]
    table = _load("controllers_table")
    assert table.main([str(root / "docs" / "controllers" / "data")]) == 0
    out = capsys.readouterr().out
    doc = (root / "docs" / "controllers.md").read_text()
    blocks = [b.split("\n", 1)[1].strip() for b in out.split("### ")[1:]]
    assert len(blocks) == 4
    for block in blocks:
        assert block in doc

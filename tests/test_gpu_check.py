"""benchmarks/gpu_check.py stays correct without a GPU: its tiny-shape run on the CPU does every
check and prints one table, and its real shapes are Qwen2's. Its GPU numbers are measured on a
GPU only (docs/performance.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("datasets")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
TRAINERS = ("trl", "flexent static", "flexent id + diagnostics")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def test_tiny_run_does_every_check_and_prints_one_table(gpu_check, capsys):
    import torch

    with torch.random.fork_rng():  # the script seeds torch's global generator
        rows = gpu_check.run(["--tiny", "--device", "cpu"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert lines[0] == "| check | setting | measured | value | note |"
    assert len(lines) == len(rows) + 2 and all(line.count("|") == 6 for line in lines)
    got = {r.item: r.value for r in rows}
    assert {r.check for r in rows} == {"(a) step", "(b) loss", "(c) memory", "(d) devices"}
    # (a) the three trainers timed, on the same completions in every round
    assert all(got[f"{name}: s / optimizer step"] > 0 for name in TRAINERS)
    assert got["flexent static / trl"] > 0 and not any("unequal" in r.note for r in rows)
    # (b) the fused path is the readable one bit for bit (tests/test_ppo_clip_spec.py); TRL's
    # formula runs in bf16 (8-bit mantissa: ~0.4 % of values of order 1), flexent in float32
    readable = "fused vs readable (ppo_clip_reference)"
    assert got[f"{readable}: max abs loss diff"] == got[f"{readable}: max abs grad diff"] == 0
    assert 0 < got["fused vs TRL formula: max abs loss diff"] < 0.05
    assert got["fused vs TRL formula: max abs grad diff"] < 0.05
    # (c) the chunked entropy is the naive one
    assert got["token_entropy vs naive: max abs diff"] < 1e-4
    # (d) without CUDA the CPU is compared with itself: exactly equal
    assert got["loss: abs(cpu - cpu) / abs(cpu)"] == 0
    assert got["gradient: norm(cpu - cpu) / norm(cpu)"] == 0
    assert got["gradient: cosine"] == pytest.approx(1.0)


def test_real_shapes_are_qwen2_sizes(gpu_check):
    """Parameter counts (q, k, v with bias, o, gate/up/down, two norms per layer; embeddings;
    final norm), vocabulary 151,936:
      0.5B-like: h 896, kv 2 x 64, ffn 4864, 24 layers: 14,912,384 per layer; tied embeddings
        136,134,656; total 494,032,768 (Qwen2.5-0.5B's count).
      7B-like: h 3584, kv 4 x 128, ffn 18944, 28 layers: 233,057,792 per layer; untied
        embeddings 2 x 544,538,624; total 7,614,699,008 (Qwen2.5-7B: 7.62B with its 152,064)."""
    assert gpu_check.n_params("0.5B-like", gpu_check.VOCAB) == 494_032_768
    assert gpu_check.n_params("7B-like", gpu_check.VOCAB) == 7_614_699_008
    args = gpu_check.parse(["--device", "cuda"])
    assert (args.tiny, args.models, args.vocab) == (False, ["0.5B-like", "7B-like"], 151_936)
    assert args.loss_shape == (8, 4096)

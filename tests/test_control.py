"""The engine-neutral step layer (flexent.control): the step controller, its one state format
(and the two formats the adapters wrote before), the step's eps, the loss's trait-supplied
arguments, and losses.aggregate's engine denominators. Expected values by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from flexent.control import (
    LEGACY_STATE_FILE,
    STATE_FILE,
    EntropyControl,
    MissingEntropyError,
    StepController,
    StepGenerators,
    loss_arguments,
    step_eps,
)
from flexent.losses import aggregate
from flexent.thresholds import DynamicThresholds


def test_id_weights_are_fixed_once_per_step():
    """id over T = 10, rho 0.5: k = 2 -> w_up = 1 - 2/5 = 0.6; k = 7 -> w_low = 1 - 2/5 = 0.6."""
    c = StepController(EntropyControl(strategy="id"), total_steps=10)
    assert c.begin_step(2) and c.weights == pytest.approx((0.6, 0.0))
    assert not c.begin_step(2)  # a later micro-batch of the same step
    assert c.begin_step(7) and c.weights == pytest.approx((0.0, 0.6))
    m = c.metrics()
    assert m["control/step"] == 7.0 and m["control/w_low"] == pytest.approx(0.6)
    assert "control/entropy_coef" not in m  # no bonus in this run


def test_total_steps_may_come_later_and_is_required():
    c = StepController(EntropyControl(strategy="id"))
    with pytest.raises(ValueError, match="total_steps"):
        c.begin_step(0)
    c.set_total_steps(4)
    c.begin_step(1)  # lambda = 1 - 1/2
    assert c.weights == (0.5, 0.0)


def test_feedback_strategy_without_entropy_names_the_hint():
    c = StepController(EntropyControl(strategy="od"), total_steps=10, missing_entropy_hint="HINT")
    with pytest.raises(MissingEntropyError, match=r"strategy 'od' .* step 0, .*\(HINT\)"):
        c.begin_step(0)


def test_first_entropy_of_a_step_wins_only_with_step():
    c = StepController(EntropyControl(strategy="target"), total_steps=10)
    c.observe_entropy(2.0, step=0)
    c.observe_entropy(9.0, step=0)  # a later sub-batch of step 0: ignored
    assert c.rollout_entropy == 2.0
    c.observe_entropy(1.0)  # no step: the latest counts
    c.observe_entropy(3.0)
    assert c.rollout_entropy == 3.0


def test_bonus_is_base_or_adaptive_plus_strategy():
    """Adaptive coefficient c_0 = 0.1, target 0.5, delta 0.05 (Skywork-OR1): H 0.4 <= 0.5 ->
    apply 0.1 and c -> 0.15; H 0.9 -> apply 0 and c -> 0.1."""
    ec = EntropyControl(entropy_coef=0.1, adaptive_entropy={"target": 0.5, "delta": 0.05})
    c = StepController(ec, total_steps=10)
    c.observe_entropy(0.4)
    c.begin_step(0)
    assert c.entropy_coef == pytest.approx(0.1)
    c.observe_entropy(0.9)
    c.begin_step(1)
    assert c.entropy_coef == pytest.approx(0.0)
    assert c.metrics()["control/entropy_coef"] == pytest.approx(0.0)
    plain = StepController(EntropyControl(entropy_coef=0.02), total_steps=10)
    plain.begin_step(0)
    assert plain.entropy_coef == 0.02 and plain.uses_bonus


def _od_path(c, steps, h):
    out = []
    for k in steps:
        c.observe_entropy(h[k])
        c.begin_step(k)
        out.append(c.weights)
    return out


# od: H_init = 1.0, H_min = 0.2: boost below 0.2, suppress above tau_high(k)
H = [1.0, 0.6, 0.15, 0.3, 0.5, 0.9, 0.7, 0.18, 0.4, 0.95]


def test_state_round_trip_resumes_exactly(tmp_path):
    straight = _od_path(StepController(EntropyControl(strategy="od"), total_steps=10), range(10), H)
    first = StepController(EntropyControl(strategy="od"), total_steps=10)
    head = _od_path(first, range(5), H)
    path = first.save(tmp_path)
    assert path.endswith(STATE_FILE)
    with open(path) as f:
        saved = json.load(f)
    assert saved["format"] == 1 and saved["step"] == 4 and saved["rollout_entropy"] == H[4]
    again = StepController(EntropyControl(strategy="od"), total_steps=10)
    again.load(tmp_path)
    assert head + _od_path(again, range(5, 10), H) == straight
    assert {(1.0, 0.0), (0.0, 1.0)} <= set(straight)  # both od states were visited
    with pytest.raises(ValueError, match="total_steps=10 but this run has total_steps=20"):
        StepController(EntropyControl(strategy="od"), total_steps=20).load(tmp_path)


def test_reads_both_earlier_state_files(tmp_path):
    """TRL's flexent_state.json (strategy state under "strategy") and verl's
    flexent_strategy.json (under "state") both resume the od schedule."""
    straight = _od_path(StepController(EntropyControl(strategy="od"), total_steps=10), range(10), H)
    first = StepController(EntropyControl(strategy="od"), total_steps=10)
    head = _od_path(first, range(5), H)
    strategy_state = first.strategy.state_dict()
    trl = tmp_path / "trl"
    trl.mkdir()
    (trl / STATE_FILE).write_text(json.dumps({
        "strategy": strategy_state, "rollout_entropy": H[4], "weights": list(first.weights),
        "weights_step": 4, "bonus": 0.0, "adaptive_entropy": None,
    }))  # fmt: skip
    verl = tmp_path / "verl"
    verl.mkdir()
    (verl / LEGACY_STATE_FILE).write_text(
        json.dumps({"strategy": "od", "total_steps": 10, "state": strategy_state})
    )
    for folder in (trl, verl):
        again = StepController(EntropyControl(strategy="od"), total_steps=10)
        again.load(folder)
        assert head + _od_path(again, range(5, 10), H) == straight, folder.name


def test_bad_state_files_name_the_problem(tmp_path):
    c = StepController(EntropyControl(strategy="od"), total_steps=10)
    with pytest.raises(FileNotFoundError, match="not written by flexent"):
        c.load(tmp_path)
    (tmp_path / STATE_FILE).write_text("{\n oops")
    torn = r"flexent_state\.json:2: invalid JSON \(Expecting property name enclosed in double"
    with pytest.raises(ValueError, match=torn):
        c.load(tmp_path)
    (tmp_path / STATE_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a flexent controller state"):
        c.load(tmp_path)


def test_step_eps_weight_zero_is_a_float_and_mixes_otherwise():
    """Defaults, implicit mode: eps_high(p) = 1.5 / (1 + 0.25 p) - 1, eps_low(p) = 1 - 0.7 /
    (1 - 0.13 p). At p = 0.5 and w = 0.5: eps_high = 0.5 * 0.3333 + 0.5 * 0.2 = 0.26667;
    eps_low = 0.5 * (1 - 0.7 / 0.935) + 0.5 * 0.2 = 0.5 * 0.25134 + 0.1 = 0.22567."""
    th = DynamicThresholds()
    old = torch.tensor([[math.log(0.5)]])
    assert step_eps(th, old, w_up=0.0, w_low=0.0) == (0.2, 0.2)
    low, high = step_eps(th, old, w_up=0.5, w_low=0.5)
    assert float(high) == pytest.approx(0.5 * (1.5 / 1.125 - 1) + 0.1, rel=1e-6)
    assert float(low) == pytest.approx(0.5 * (1 - 0.7 / 0.935) + 0.1, rel=1e-6)
    low, high = step_eps(DynamicThresholds(eps_std=(0.2, 0.28)), old, w_up=1.0, w_low=0.0)
    assert low == 0.2 and isinstance(low, float) and isinstance(high, torch.Tensor)


def test_loss_arguments_follow_the_traits():
    calls = []

    def gen():
        calls.append(1)
        return torch.Generator().manual_seed(0)

    assert loss_arguments("ppo_clip", {"clip_c": 3.0}, generator=gen, entropy=None) == {
        "clip_c": 3.0
    }
    assert not calls  # a deterministic loss never asks for a generator
    assert "generator" in loss_arguments("clip_cov", {}, generator=gen, entropy=None)
    ent = torch.ones(1, 2, requires_grad=True)
    got = loss_arguments("archer", {}, generator=gen, entropy=ent)
    assert not got["entropy"].requires_grad
    with pytest.raises(RuntimeError, match=r"archer.*entropy.*: use the wrapper"):
        loss_arguments(
            "archer", {}, generator=gen, entropy=None, missing_entropy_hint="use the wrapper"
        )


def test_step_generators_reseed_per_step_and_device():
    """Seed of step k: ((seed * 1_000_003 + rank) * 1_000_033 + k) mod 2^63."""
    g = StepGenerators(seed=3, rank=1)
    a = g.get(5).initial_seed()
    assert a == ((3 * 1_000_003 + 1) * 1_000_033 + 5) % 2**63
    first = g.get(5)
    assert g.get(5) is first  # the same step keeps drawing from one generator
    assert g.get(6).initial_seed() == a + 1


def test_aggregate_engine_denominators():
    """TRL's grpo averages over every sequence, the empty one included: rows (1 + 3) / 2 = 2
    and 0 -> (2 + 0) / 2 = 1 (verl's seq-mean would skip the empty row: 2). DAPO divides the
    token sum 4 by the whole batch's count (8 here). NaN padding never leaks."""
    loss = torch.tensor([[1.0, 3.0], [float("nan"), float("nan")]])
    mask = torch.tensor([[1, 1], [0, 0]]).bool()
    assert float(aggregate(loss, mask, "seq-mean-token-mean")) == 2.0
    assert float(aggregate(loss, mask, "seq-mean-token-mean", num_seqs=2)) == 1.0
    assert float(aggregate(loss, mask, "token-mean", num_tokens=8.0)) == 0.5
    assert (
        float(aggregate(loss, mask, "seq-mean-token-sum-norm", num_seqs=2, norm_const=4.0)) == 0.5
    )

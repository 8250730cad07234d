"""Resume: clip_cov's draws and the strategy state continue exactly from verl checkpoints."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("verl")

from verl_support import actor_config, batch


def run(ctrl, steps, entropies):
    """verl steps ``steps`` (from 1) through the driver's functions: observe, then the weights."""
    from flexent.integrations.verl.step import observe_entropy, step_data

    out = []
    for s in steps:
        observe_entropy(ctrl, s, entropies[s])
        data = step_data(ctrl, s)
        out.append((data["flexent_w_up"], data["flexent_w_low"]))
    return out


def od(total_steps):
    from flexent.control import EntropyControl
    from flexent.integrations.verl.step import step_controller

    return step_controller(EntropyControl(strategy="od"), total_steps=total_steps)


def test_clip_cov_draws_resume_exactly(v):
    """Clip-Cov's random token choice on a resumed run (a fresh worker process: a new config
    object) equals the uninterrupted run's, step by step and micro-batch by micro-batch.

    Band [0.01, 101] and cov bounds (-100, 100): every valid token with A != 0 is eligible, half
    of the valid tokens are drawn; a drawn token's gradient is 0."""
    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.integrations.verl.loss import runtime

    fn = v.core_algos.get_policy_loss_fn("flexent_clip_cov")
    old, new, adv, mask = batch(11, B=6, T=9)

    def make_cfg():
        pl = FlexentPolicyLossConfig(
            loss_mode="flexent_clip_cov",
            clip_cov_ratio=0.5,
            clip_cov_lb=-100.0,
            clip_cov_ub=100.0,
            seed=3,
        )
        return actor_config(v, pl, clip_ratio_low=0.99, clip_ratio_high=100.0)

    def detached(cfg, steps):
        out = []
        for step in steps:
            runtime(cfg.policy_loss).update(step=step, w_up=0.0, w_low=0.0)
            for _ in range(2):  # two micro-batches per step
                lp = new.clone().requires_grad_(True)
                loss, _ = fn(old, lp, adv, mask, "token-mean", cfg)
                loss.backward()
                out.append(mask & (lp.grad == 0))
            runtime(cfg.policy_loss).clear()
        return out

    straight = detached(make_cfg(), range(4))
    resumed = detached(make_cfg(), range(2, 4))
    n = int(mask.sum())
    assert all(int(d.sum()) == n // 2 for d in straight)
    assert len({tuple(d.flatten().tolist()) for d in straight}) > 1  # the draws really vary
    for got, want in zip(resumed, straight[4:], strict=True):
        assert torch.equal(got, want)
    # independently: step k's first draw is flexent's clip_cov with a generator seeded
    # ((seed * 1_000_003 + rank) * 1_000_033 + k) mod 2^63, seed 3, rank 0, k = 2
    from flexent.losses import get_policy_loss

    g = torch.Generator().manual_seed(((3 * 1_000_003 + 0) * 1_000_033 + 2) % 2**63)
    lp = new.clone().requires_grad_(True)
    out = get_policy_loss("clip_cov")(
        lp, old, adv, mask, eps_low=0.99, eps_high=100.0, clip_cov_ratio=0.5,
        clip_cov_lb=-100.0, clip_cov_ub=100.0, generator=g,
    )  # fmt: skip
    out.per_token_loss[mask].mean().backward()
    assert torch.equal(mask & (lp.grad == 0), straight[4])


def test_strategy_state_resumes_exactly(tmp_path):
    from flexent.control import LEGACY_STATE_FILE, STATE_FILE

    # entropy path that drives od through boost and suppress: H_init = 1.0, tau_low = 0.2
    H = {
        s: h
        for s, h in enumerate([0, 1.0, 0.6, 0.15, 0.3, 0.5, 0.9, 0.7, 0.18, 0.4, 0.95], start=0)
    }
    straight = run(od(10), range(1, 11), H)
    first = od(10)
    head = run(first, range(1, 6), H)
    path = first.save(str(tmp_path / "global_step_5"))
    assert os.path.basename(path) == STATE_FILE
    resumed = od(10)
    resumed.load(str(tmp_path / "global_step_5"))
    assert head + run(resumed, range(6, 11), H) == straight
    assert {(1.0, 0.0), (0.0, 1.0)} <= set(straight)  # both od states were visited

    wrong = od(20)
    with pytest.raises(ValueError, match="total_steps"):
        wrong.load(str(tmp_path / "global_step_5"))
    with pytest.raises(FileNotFoundError, match="not written by flexent"):
        resumed.load(str(tmp_path / "missing"))
    # a checkpoint of the verl adapter before the shared format (flexent_strategy.json with the
    # strategy state under "state") resumes the same schedule
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    saved = json.loads((tmp_path / "global_step_5" / STATE_FILE).read_text())
    old = {k: saved[k] for k in ("strategy", "total_steps", "state")}
    (legacy / LEGACY_STATE_FILE).write_text(json.dumps(old))
    again = od(10)
    again.load(str(legacy))
    assert head + run(again, range(6, 11), H) == straight
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / STATE_FILE).write_text("{\n oops")
    torn = r"flexent_state\.json:2: invalid JSON \(Expecting property name enclosed in double"
    with pytest.raises(ValueError, match=torn):
        resumed.load(str(tmp_path / "bad"))


def test_od_without_entropy_fails():
    from flexent.control import EntropyControl
    from flexent.integrations.verl.step import step_controller, step_data

    with pytest.raises(RuntimeError, match="bypass_mode"):
        step_data(od(10), 1)
    # an open-loop strategy needs no entropy: did at k = 0 (verl step 1) has lambda = 1, so
    # w_up = 1 - lambda = 0; at k = 4 (step 5) phase I ends: w_up = 1 - (1 - 4/5) = 0.8
    did = step_controller(EntropyControl(strategy="did"), total_steps=10)
    assert step_data(did, 1)["flexent_w_up"] == 0.0
    assert step_data(did, 5)["flexent_w_up"] == pytest.approx(0.8)

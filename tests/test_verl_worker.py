"""flexent's losses inside verl's own actor worker: verl 0.9.1's ActorRolloutRefWorker, FSDP2
engine and ppo_loss on CPU, built from verl's Hydra ppo_trainer config with the overrides
recipes/verl/ pass, and driven step by step by verl's and flexent's own trainer methods
(_compute_old_log_prob, _update_actor, _save_checkpoint, _load_checkpoint).
tests/verl_worker_support.py says what is adapted for the CPU and what is stood in.

The step: 4 sequences (prompt, response) = (3, 6), (5, 4), (4, 5), (2, 3), advantages +1, -0.5,
+0.8, -1.2; ppo_mini_batch_size 2 (2 optimizer steps per update), micro-batches of 1 sequence,
lr 3e-2, so the second mini-batch sees a ratio != 1 and clips.
"""

from __future__ import annotations

import math
import types

import pytest
import torch

pytest.importorskip("verl")
pytest.importorskip("transfer_queue")  # verl's v1 trainer (flexent_sync's base) imports it

import verl_worker_support as vw

PL = vw.PL
ACTOR = f"{vw.A}.actor"
# verl's own loss with clip-higher's band: what recipes/verl's clip_higher sets for flexent
VANILLA = [f"{ACTOR}.clip_ratio_low=0.2", f"{ACTOR}.clip_ratio_high=0.28"]
# each registered loss with the overrides users are told to pass: recipes/verl/common.sh where
# a method uses the loss, else docs/verl.md ("Loss traits: SAPO and GSPO")
LOSS_OVERRIDES = {
    "flexent_ppo_clip": ("clip_higher", []),
    "flexent_ce_gppo": ("ce_gppo", []),
    "flexent_clip_cov": ("clip_cov", []),
    "flexent_kl_cov": ("kl_cov", []),
    "flexent_cispo": ("cispo", []),
    "flexent_dppo_tv": ("dppo_tv", []),
    "flexent_dppo_kl": ("dppo_kl", []),
    "flexent_aspo": ("aspo", []),
    "flexent_bapo": ("bapo", []),
    "flexent_archer": ("archer", []),
    "flexent_vespo": ("vespo", []),
    "flexent_luspo": ("luspo", []),
    "flexent_gmpo": ("gmpo", []),
    "flexent_dro": ("dro", []),
    "flexent_clip_b": ("clip_b", []),
    "flexent_erc": ("erc", []),
    "flexent_gspo": (None, [f"{PL}._target_={vw.FLEXENT_TARGET}", f"{PL}.loss_mode=flexent_gspo",
                            f"{ACTOR}.clip_ratio_low=3e-4", f"{ACTOR}.clip_ratio_high=4e-4",
                            f"{ACTOR}.loss_agg_mode=seq-mean-token-mean"]),
    "flexent_sapo": (None, [f"{PL}._target_={vw.FLEXENT_TARGET}", f"{PL}.loss_mode=flexent_sapo",
                            f"{ACTOR}.loss_agg_mode=seq-mean-token-mean"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def cpu_worker(tmp_path_factory):
    """One worker for the module (built with verl's own vanilla loss), the step's rollouts,
    and the engine state every test starts from; verl's process-global state is restored
    after the module."""
    with vw.cpu_verl_process():
        model_dir = vw.build_model(tmp_path_factory.mktemp("tiny_qwen2"))
        worker = vw.build_worker(vw.compose(vw.cpu_overrides(model_dir) + VANILLA))
        batch = vw.rollout_batch(worker.actor.model_config.hf_config.vocab_size)
        state = vw.EngineState(worker)
        yield types.SimpleNamespace(worker=worker, model_dir=model_dir, state=state, batch=batch)


@pytest.fixture
def run(cpu_worker, monkeypatch):
    """``run(overrides, trainer_cls=FlexentPPOTrainer, global_steps=1)``: a trainer on verl's
    config (the CPU overrides plus ``overrides``) with a fresh copy of the step's rollouts in
    TransferQueue, the worker back at the initial weights; flexent's trainer set up as
    flexent_sync does at start (strategy, checks, its loss installed on the worker)."""
    import transfer_queue

    from flexent.integrations.verl import FlexentPPOTrainer

    def make(overrides, trainer_cls=FlexentPPOTrainer, **kw):
        cpu_worker.state.restore()
        tq = vw.TransferQueue(cpu_worker.batch)
        monkeypatch.setattr(transfer_queue, "kv_batch_get", tq.kv_batch_get)
        monkeypatch.setattr(transfer_queue, "kv_batch_put", tq.kv_batch_put)
        cfg = vw.compose(vw.cpu_overrides(cpu_worker.model_dir) + list(overrides))
        t = vw.trainer(trainer_cls, cfg, vw.WorkerGroup(cpu_worker.worker, tq), **kw)
        if trainer_cls is FlexentPPOTrainer:
            t._flexent_setup()
        return t

    yield make
    cpu_worker.state.restore()


@pytest.fixture
def loss_calls(monkeypatch):
    """The loss modes verl's ppo_loss looked up in its registry, in order."""
    import verl.workers.utils.losses as verl_losses

    calls, lookup = [], verl_losses.get_policy_loss_fn

    def spy(name):
        calls.append(name)
        return lookup(name)

    monkeypatch.setattr(verl_losses, "get_policy_loss_fn", spy)
    return calls


def micro_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """What verl logs for a per-token mean metric: each micro-batch's (one sequence's) token
    mean, averaged over the micro-batches of a mini-batch (AggregationType.MEAN), then over the
    mini-batches (reduce_metrics): here the plain mean of the 4 per-sequence means."""
    per_seq = (values * mask).sum(-1) / mask.sum(-1)
    return float(per_seq.mean())


def test_static_ppo_clip_equals_vanilla(run, cpu_worker, loss_calls):
    """flexent_ppo_clip + static (recipe clip_higher, flexent_sync) and verl's vanilla (verl's
    sync trainer, the loss verl installs) on the same batch from the same weights: the same
    pg_loss, clip fractions and k1 per mini-batch, and the same updated parameters."""
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    verl_run = run(VANILLA, PPOTrainerSync)
    verl_metrics = vw.actor_step(verl_run)
    verl_params = vw.full_params(cpu_worker.worker)
    flex_run = run(vw.recipe_overrides("clip_higher"))
    flex_metrics = vw.actor_step(flex_run)
    flex_params = vw.full_params(cpu_worker.worker)

    assert loss_calls == ["vanilla"] * 4 + ["flexent_ppo_clip"] * 4  # 2 mini x 2 micro each
    mine, theirs = (
        vw.worker_metrics(flex_run.actor_rollout_wg),
        vw.worker_metrics(verl_run.actor_rollout_wg),
    )
    for key in ("actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
        assert flex_metrics[key] == pytest.approx(verl_metrics[key], rel=1e-5, abs=1e-7), key
    assert theirs["actor/pg_clipfrac"][1] > 0  # the second mini-batch clips: a real comparison
    initial = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in cpu_worker.state.params]
    assert any(not torch.equal(a, b) for a, b in zip(verl_params, initial, strict=True))
    for a, b in zip(flex_params, verl_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# The schedules over T = 10 steps, phase_ratio 0.5 (recipes id, did; docs/strategies.md), with
# k = global_steps - 1 and lambda_k = 1 - k/5 (k <= 5), -(k - 5)/5 (k > 5):
#   id  phase I  (lambda, 0):      step 3, k = 2: (0.6, 0)
#   id  phase II (0, 1 + lambda):  step 9, k = 8: (0, 0.4)
#   did phase II (1, 1 + lambda):  step 8, k = 7: (1, 0.6)   (id never sets both weights at once)
@pytest.mark.parametrize(
    ("method", "step", "w_up", "w_low"),
    [("id", 3, 0.6, 0.0), ("id", 9, 0.0, 0.4), ("did", 8, 1.0, 0.6)],
)
def test_thresholds_reach_the_loss_through_minibatching(run, cpu_worker, method, step, w_up, w_low):
    """The eps flexent's loss used inside verl's mini/micro-batching equal the paper's
    thresholds on pi_old, mixed with verl's clip ratios by the step's weights:

        eps_high = w_up clamp((1 + 0.5)/(1 + 0.25 p) - 1) + (1 - w_up) 0.2
        eps_low  = w_low clamp(1 - (1 - 0.3)/(1 - 0.13 p)) + (1 - w_low) 0.2

    (implicit mode, (alpha_u, beta_u) = (-0.25, 0.5), (alpha_l, beta_l) = (-0.13, 0.3), clamp
    to [0.05, 0.6], p = pi_old's token probability, verl's default clip ratios 0.2 / 0.2); and
    the region diagnostics appear in verl's metrics."""
    t = run(vw.recipe_overrides(method), global_steps=step)
    metrics = vw.actor_step(t)
    sent = t.actor_rollout_wg.extra_info[-1]  # by flexent_sync's _update_actor
    assert (sent["flexent_step"], sent["flexent_w_up"], sent["flexent_w_low"]) == pytest.approx(
        (step - 1, w_up, w_low)
    )
    assert (metrics["actor/control/w_up"], metrics["actor/control/w_low"]) == pytest.approx(
        (w_up, w_low)
    )  # what the loss used, logged by it in every micro-batch
    step_data = t.actor_rollout_wg.tq.fields  # pi_old from the step's old-log-prob pass
    mask = vw.padded(step_data, "response_mask").float()
    p = vw.padded(step_data, "old_log_probs").exp()
    eps_high = w_up * ((1.5 / (1 + 0.25 * p)) - 1).clamp(0.05, 0.6) + (1 - w_up) * 0.2
    eps_low = w_low * (1 - 0.7 / (1 - 0.13 * p)).clamp(0.05, 0.6) + (1 - w_low) * 0.2
    assert metrics["actor/clip/eps_high_mean"] == pytest.approx(
        micro_mean(eps_high, mask), rel=1e-5
    )
    assert metrics["actor/clip/eps_low_mean"] == pytest.approx(micro_mean(eps_low, mask), rel=1e-5)
    per_mini = vw.worker_metrics(t.actor_rollout_wg)["actor/clip/eps_high_mean"]
    halves = [micro_mean(eps_high[i : i + 2], mask[i : i + 2]) for i in (0, 2)]
    assert per_mini == pytest.approx(halves, rel=1e-5)  # mini-batch by mini-batch
    for scheme in ("region", "region_emp"):  # the theory and empirical E1-E4
        shares = [metrics[f"actor/{scheme}/E{i}/share"] for i in range(1, 5)]
        assert sum(shares) == pytest.approx(1.0, abs=1e-6), scheme
        assert f"actor/{scheme}/E2/pred_dH" in metrics


@pytest.mark.parametrize("loss_mode", sorted(LOSS_OVERRIDES))
def test_every_flexent_loss_does_a_real_update(run, cpu_worker, loss_calls, loss_mode):
    method, extra = LOSS_OVERRIDES[loss_mode]
    overrides = [*(vw.recipe_overrides(method) if method else []), *extra]
    before = vw.full_params(cpu_worker.worker)
    metrics = vw.actor_step(run(overrides))
    assert set(loss_calls) == {loss_mode} and len(loss_calls) == 4
    assert math.isfinite(metrics["actor/pg_loss"])
    after = vw.full_params(cpu_worker.worker)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert all(torch.isfinite(a).all() for a in after)


def test_every_registered_loss_is_covered():
    from flexent.integrations.verl import REGISTERED_LOSSES

    assert sorted(LOSS_OVERRIDES) == sorted(REGISTERED_LOSSES)


def test_step_and_bonus_from_the_trainer_reach_the_loss(run, cpu_worker):
    """flexent_sync's _update_actor attaches step, weights and the entropy-bonus coefficient
    (entropy_coef 0.05, constant); verl ships them to every micro-batch, and flexent's loss
    wrapper subtracts 0.05 x the current policy's entropy, token-mean as verl's own bonus. In
    the first mini-batch (sequences 0 and 1) the weights are still pi_old's, so its bonus term is
    0.05 x pi_old's mean entropy over those sequences' 10 tokens."""
    bonus = [f"+{PL}.entropy_coef=0.05", f"{ACTOR}.calculate_entropy=true"]
    t = run([*vw.recipe_overrides("clip_higher"), *bonus], global_steps=4)
    vw.actor_step(t)
    sent = t.actor_rollout_wg.extra_info[-1]
    assert {k: sent[k] for k in sent if k.startswith("flexent_")} == {
        "flexent_step": 3, "flexent_w_up": 0.0, "flexent_w_low": 0.0, "flexent_entropy_coef": 0.05,
    }  # fmt: skip
    term = vw.worker_metrics(t.actor_rollout_wg)["actor/flexent/entropy_bonus"]
    first_two = torch.cat(t.actor_rollout_wg.tq.fields["entropy"].unbind()[:2])
    assert term[0] == pytest.approx(0.05 * float(first_two.mean()), rel=1e-5)
    assert len(term) == 2 and term[1] > 0


@pytest.mark.parametrize("method", ["archer", "high_entropy_minority"])
def test_recipes_needing_entropy_run(run, cpu_worker, method):
    """recipes/verl/common.sh's archer and high_entropy_minority need the current policy's
    entropy in the model output, which verl computes in the update only with
    actor.calculate_entropy=true (or entropy_coeff != 0): the recipes set it, and the update
    runs; without it flexent_sync refuses at setup, naming the key, before any update."""
    before = vw.full_params(cpu_worker.worker)
    metrics = vw.actor_step(run(vw.recipe_overrides(method)))
    assert math.isfinite(metrics["actor/pg_loss"])
    assert any(
        not torch.equal(a, b)
        for a, b in zip(vw.full_params(cpu_worker.worker), before, strict=True)
    )
    without = [o for o in vw.recipe_overrides(method) if not o.endswith("calculate_entropy=true")]
    with pytest.raises(ValueError, match="calculate_entropy=true"):
        run(without)


def test_checkpoint_round_trip(run, cpu_worker, tmp_path):
    """flexent_sync's _save_checkpoint (the strategy state, then verl's: the worker's FSDP
    checkpoint, data.pt, latest_checkpointed_iteration.txt) and _load_checkpoint (verl's
    resume, then the strategy state) through the real worker: a run resumed after step 1
    does at step 2 exactly what the uninterrupted run does, weights, optimizer and strategy.

    od keeps H_init, the entropy of the first step it saw: resumed, it still holds step 1's
    entropy H_1 at step 2, where a strategy built afresh would take step 2's H_2 != H_1."""
    overrides = [*vw.recipe_overrides("od"), f"trainer.default_local_dir={tmp_path}"]
    first = run(overrides)
    h_1 = vw.actor_step(first)["actor/entropy/mean"]
    first._save_checkpoint()
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "1"
    assert list((tmp_path / "global_step_1").glob("flexent_*.json"))  # the strategy's file
    after_1 = vw.full_params(cpu_worker.worker)
    first.global_steps = 2
    straight = vw.actor_step(first)
    straight_params = vw.full_params(cpu_worker.worker)

    resumed = run(overrides, global_steps=0)  # the worker back at the initial weights
    resumed._load_checkpoint()
    assert resumed.global_steps == 1
    for got, want in zip(vw.full_params(cpu_worker.worker), after_1, strict=True):
        assert torch.equal(got, want)
    resumed.global_steps = 2  # verl's fit loop counts on from the checkpoint
    again = vw.actor_step(resumed)
    assert straight["actor/entropy/mean"] != pytest.approx(h_1)  # H_2 != H_1
    assert again["actor/control/h_init"] == straight["actor/control/h_init"] == pytest.approx(h_1)
    control = {k: v for k, v in straight.items() if k.startswith("actor/control/")}
    assert {k: again[k] for k in control} == control
    for key in ("actor/pg_loss", "actor/clip/eps_low_mean", "actor/clip/eps_high_mean"):
        assert again[key] == pytest.approx(straight[key], rel=1e-6), key
    for got, want in zip(vw.full_params(cpu_worker.worker), straight_params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)

"""The training step, the strategy weights and the rollout entropy reach the loss through verl's
real ppo_loss and the flexent_sync trainer hooks."""

from __future__ import annotations

import types

import pytest
import torch

pytest.importorskip("verl")

from verl_support import actor_config, batch


def ppo_loss_inputs(old, new, adv, mask, extra: dict):
    """verl's padded layout: 2 prompt tokens + T response tokens per row, log-probs flat."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    B, T = old.shape
    P = 2
    attn = torch.ones(B, P + T, dtype=torch.long)
    flat = []
    for b in range(B):  # model output at position i predicts token i + 1: response at P-1..P+T-2
        row = torch.zeros(P + T, dtype=old.dtype)
        row[P - 1 : P + T - 1] = new[b]
        flat.append(row)
    data = TensorDict(
        {
            "prompts": torch.ones(B, P, dtype=torch.long),
            "responses": torch.ones(B, T, dtype=torch.long),
            "attention_mask": attn,
            "response_mask": mask.long(),
            "old_log_probs": old,
            "advantages": adv,
        },
        batch_size=[B],
    )
    info = {"dp_size": 1, "batch_num_tokens": None, "global_batch_size": None}
    info.update(extra)
    tu.assign_non_tensor(data, **info)
    return {"log_probs": torch.cat(flat)}, data


def test_step_reaches_loss_through_ppo_loss(v):
    """The id schedule over T = 10 verl steps: k = step - 1; w_up = 1 - k/5 in phase I, then
    w_low = 1 + lambda = 1 - (k - 5)/5. eps_high = w_up H(p) + (1 - w_up) 0.28 per token."""
    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig
    from flexent.integrations.verl.step import step_controller, step_data

    cfg = actor_config(
        v, FlexentPolicyLossConfig(strategy="id", strategy_params={"total_steps": 10})
    )
    ctrl = step_controller(cfg.policy_loss.control(eps_std=(0.2, 0.28)), total_steps=10)
    loss_fn = FlexentActorLoss(cfg)
    old, new, adv, mask = batch(5)
    p = old.exp()
    h = ((1.5 / (1 + 0.25 * p)) - 1).clamp(0.05, 0.6)
    m_ = (1 - 0.7 / (1 - 0.13 * p)).clamp(0.05, 0.6)
    for step, w_up, w_low in [(1, 1.0, 0.0), (3, 0.6, 0.0), (6, 0.0, 0.0), (9, 0.0, 0.4)]:
        extra = step_data(ctrl, step)
        assert (extra["flexent_w_up"], extra["flexent_w_low"]) == pytest.approx((w_up, w_low))
        model_output, data = ppo_loss_inputs(old, new, adv, mask, extra)
        _, metrics = loss_fn(model_output, data)
        eh = float((w_up * h + (1 - w_up) * 0.28)[mask].mean())
        el = float((w_low * m_ + (1 - w_low) * 0.2)[mask].mean())
        assert metrics["actor/clip/eps_high_mean"].aggregate() == pytest.approx(eh, rel=1e-6)
        assert metrics["actor/clip/eps_low_mean"].aggregate() == pytest.approx(el, rel=1e-6)
        assert metrics["actor/control/w_up"].aggregate() == pytest.approx(w_up)
        assert cfg.policy_loss.__dict__["_flexent_runtime"] == {}  # nothing leaks to the next call


def test_step_dependent_strategy_without_trainer_fails(v):
    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig

    cfg = actor_config(
        v, FlexentPolicyLossConfig(strategy="did", strategy_params={"total_steps": 10})
    )
    model_output, data = ppo_loss_inputs(*batch(2), {})
    with pytest.raises(RuntimeError, match="trainer_mode=flexent_sync"):
        FlexentActorLoss(cfg)(model_output, data)


def test_trainer_update_actor_ships_weights(v):
    """FlexentPPOTrainer._update_actor on verl's real config, with a fake worker group that runs
    the installed loss the way verl's worker does (extra_info -> non-tensor data)."""
    from flexent.control import EntropyControl
    from flexent.integrations.verl import (
        FlexentActorLoss,
        FlexentPolicyLossConfig,
        FlexentPPOTrainer,
    )
    from flexent.integrations.verl.step import observe_entropy, step_controller

    conf = v.compose(["actor_rollout_ref.rollout.n=2"])
    cfg = actor_config(
        v, FlexentPolicyLossConfig(strategy="od", strategy_params={"total_steps": 10})
    )
    old, new, adv, mask = batch(6)

    class FakeWG:
        def update_actor(self, meta):
            model_output, data = ppo_loss_inputs(old, new, adv, mask, dict(meta.extra_info))
            _, metrics = FlexentActorLoss(cfg)(model_output, data)
            out = {k: [m.aggregate()] for k, m in metrics.items()}
            return {"metrics": {**out, "mfu": [0.0]}}

    trainer = object.__new__(FlexentPPOTrainer)
    trainer.trainer_mode = "flexent_sync"
    assert trainer.trainer_mode == "sync"  # verl's mode checks see the sync trainer
    trainer.config, trainer.actor_rollout_wg, trainer.global_steps = conf, FakeWG(), 1
    trainer.flexent = step_controller(EntropyControl(strategy="od"), total_steps=10)
    observe_entropy(trainer.flexent, 1, 1.0)  # s_0 = 0: suppress, (w_up, w_low) = (0, 1)
    meta = types.SimpleNamespace(extra_info={})
    metrics: dict = {}
    trainer._update_actor(meta, metrics)
    assert meta.extra_info["flexent_step"] == 0
    assert (metrics["actor/control/w_up"], metrics["actor/control/w_low"]) == (0.0, 1.0)
    p = old.exp()
    el = (1 - 0.7 / (1 - 0.13 * p)).clamp(0.05, 0.6)
    assert metrics["actor/clip/eps_low_mean"] == pytest.approx(float(el[mask].mean()), rel=1e-6)
    assert metrics["actor/clip/eps_high_mean"] == pytest.approx(0.28)


def test_strategy_sees_mean_token_entropy(v, monkeypatch):
    """verl's real _compute_old_log_prob under loss_agg_mode=seq-mean-token-sum, with a stand-in
    TransferQueue and worker group: verl's actor/entropy is then the mean per-sequence entropy
    SUM, but the strategy must see the mean token entropy (docs/method.md §7, item 10: H_k is
    token-weighted).

    Responses of 1, 4 and 3 tokens (prompt of 2): token entropies 1 | 2 2 2 2 | 3 3 3, so the
    token mean is (1 + 8 + 9) / 8 = 2.25 and the seq-mean-token-sum is (1 + 8 + 9) / 3 = 6."""
    import transfer_queue as tq
    from tensordict import TensorDict

    from flexent.control import EntropyControl
    from flexent.integrations.verl import FlexentPPOTrainer
    from flexent.integrations.verl.step import step_controller, step_data, step_metrics

    lengths, P = [1, 4, 3], 2
    ent_rows = [torch.full((P + n,), float(h)) for n, h in zip(lengths, [1, 2, 3], strict=True)]
    for row, n in zip(ent_rows, lengths, strict=True):
        row[P + n - 1] = float("nan")  # the position after the last response token: not used

    def nested(rows):
        return torch.nested.as_nested_tensor(rows, layout=torch.jagged)

    store = TensorDict(
        {"response_mask": nested([torch.ones(n, dtype=torch.long) for n in lengths])},
        batch_size=[3],
    )

    def kv_batch_get(keys, partition_id, select_fields):
        return store.select(*select_fields)

    def kv_batch_put(keys, partition_id, fields):
        store.update(fields)
        return meta

    monkeypatch.setattr(tq, "kv_batch_get", kv_batch_get)
    monkeypatch.setattr(tq, "kv_batch_put", kv_batch_put)

    class Meta(types.SimpleNamespace):
        def __len__(self):
            return 3

    class FakeWG:
        def compute_log_prob(self, batch):
            store["entropy"] = nested([r.clone() for r in ent_rows])
            store["log_probs"] = nested([torch.zeros(P + n) for n in lengths])
            return Meta()

    meta = Meta(keys=["a", "b", "c"], partition_id="train", extra_info={})
    trainer = object.__new__(FlexentPPOTrainer)
    trainer.config = v.compose(
        [
            "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum",
            "actor_rollout_ref.rollout.calculate_log_probs=false",
        ]
    )
    trainer.actor_rollout_wg, trainer.global_steps = FakeWG(), 1
    trainer.flexent = step_controller(EntropyControl(strategy="target"), total_steps=10)
    metrics: dict = {}
    trainer._compute_old_log_prob(meta, metrics)
    assert metrics["actor/entropy"] == pytest.approx(6.0)  # verl's own, length-scaled
    assert metrics["actor/entropy/mean"] == pytest.approx(2.25)
    step_data(trainer.flexent, 1)
    assert step_metrics(trainer.flexent)["actor/control/h_init"] == pytest.approx(2.25)


def test_inert_clipping_is_detected(v):
    from flexent.integrations.verl.trainer import clipping_is_inert

    on_policy = v.compose(
        ["data.train_batch_size=64", "actor_rollout_ref.actor.ppo_mini_batch_size=64"]
    )
    off_policy = v.compose(
        ["data.train_batch_size=64", "actor_rollout_ref.actor.ppo_mini_batch_size=16"]
    )
    epochs = v.compose(
        [
            "data.train_batch_size=64",
            "actor_rollout_ref.actor.ppo_mini_batch_size=64",
            "actor_rollout_ref.actor.ppo_epochs=2",
        ]
    )
    assert (
        clipping_is_inert(on_policy)
        and not clipping_is_inert(off_policy)
        and not clipping_is_inert(epochs)
    )
    # verl splits the update batch by ppo_mini_batch_size whatever use_dynamic_bsz says
    # (engine_workers.train_mini_batch); dynamic bsz only changes the micro-batches.
    dynamic = v.compose(
        [
            "data.train_batch_size=64",
            "actor_rollout_ref.actor.ppo_mini_batch_size=64",
            "actor_rollout_ref.actor.use_dynamic_bsz=true",
        ]
    )
    assert clipping_is_inert(dynamic)


def test_entropy_reaches_entropy_gated_losses(v):
    """flexent_archer and top_entropy_quantile read the current policy's entropy that the loss
    wrapper takes from verl's model output; without the wrapper they fail loudly."""
    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig

    old, new, adv, mask = batch(6)
    cfg = actor_config(v, FlexentPolicyLossConfig(loss_mode="flexent_archer"))
    model_output, data = ppo_loss_inputs(old, new, adv, mask, {})
    B, T = old.shape
    ent = torch.rand(B, T, generator=torch.Generator().manual_seed(2), dtype=old.dtype)
    flat = []
    for b in range(B):
        row = torch.zeros(2 + T, dtype=old.dtype)
        row[1 : 1 + T] = ent[b]
        flat.append(row)
    model_output["entropy"] = torch.cat(flat)
    loss, metrics = FlexentActorLoss(cfg)(model_output, data)
    assert torch.isfinite(loss)
    high = sum(
        int((ent[b][mask[b]] > torch.quantile(ent[b][mask[b]].float(), 0.8)).sum())
        for b in range(B)
    )
    got = metrics["actor/archer/frac_high_entropy"].aggregate()
    assert got == pytest.approx(high / int(mask.sum()))
    with pytest.raises(RuntimeError, match="flexent_sync"):
        v.core_algos.get_policy_loss_fn("flexent_archer")(old, new, adv, mask, "token-mean", cfg)
    top = actor_config(v, FlexentPolicyLossConfig(top_entropy_quantile=0.5))
    loss_top, _ = FlexentActorLoss(top)(model_output, data)
    loss_all, _ = FlexentActorLoss(actor_config(v))(model_output, data)
    assert not torch.equal(loss_top, loss_all)


def _flat(values, P: int = 2):
    """A [B, T] response tensor in verl's flat no-padding layout (see ppo_loss_inputs)."""
    B, T = values.shape
    rows = []
    for b in range(B):
        row = torch.zeros(P + T, dtype=values.dtype)
        row[P - 1 : P + T - 1] = values[b]
        rows.append(row)
    return torch.cat(rows)


def test_adaptive_entropy_bonus_reaches_the_loss(v):
    """Skywork-OR1's coefficient on the driver, applied in the workers' loss: c_0 = 0.01,
    target 0.5, delta 0.01. Rollout entropy 0.3 (<= target): apply 0.01, c -> 0.02; 0.7: apply
    0, c -> 0.01; 0.2: apply 0.01. The loss is verl's ppo_loss minus coef * token-mean(H)."""
    from verl.workers.utils.losses import ppo_loss

    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig
    from flexent.integrations.verl.step import (
        observe_entropy,
        step_controller,
        step_data,
        step_metrics,
    )

    pl = FlexentPolicyLossConfig(
        strategy="static", entropy_coef=0.01,
        adaptive_entropy={"target": 0.5, "delta": 0.01, "min": 0.0, "max": 0.1},
    )  # fmt: skip
    cfg = actor_config(v, pl, calculate_entropy=True)
    ctrl = step_controller(pl.control(eps_std=0.2), total_steps=10)
    old, new, adv, mask = batch(7)
    g = torch.Generator().manual_seed(1)
    ent = torch.rand(old.shape, generator=g, dtype=torch.float64) * 2
    token_mean = float((ent * mask).sum() / mask.sum())
    for step, rollout_h, applied in [(1, 0.3, 0.01), (2, 0.7, 0.0), (3, 0.2, 0.01)]:
        observe_entropy(ctrl, step, rollout_h)
        extra = step_data(ctrl, step)
        assert extra["flexent_entropy_coef"] == pytest.approx(applied)
        model_output, data = ppo_loss_inputs(old, new, adv, mask, extra)
        model_output["entropy"] = _flat(ent)
        got, metrics = FlexentActorLoss(cfg)(model_output, data)
        model_output, data = ppo_loss_inputs(old, new, adv, mask, extra)
        plain, _ = ppo_loss(actor_config(v, FlexentPolicyLossConfig(strategy="static")),
                            {"log_probs": model_output["log_probs"]}, data)  # fmt: skip
        assert float(got) == pytest.approx(float(plain) - applied * token_mean, rel=1e-9)
        if applied:  # logged when a bonus term is added
            bonus = metrics["actor/flexent/entropy_bonus"].aggregate()
            assert float(bonus) == pytest.approx(applied * token_mean, rel=1e-9)
        assert step_metrics(ctrl)["actor/control/entropy_coef"] == pytest.approx(applied)
    state = ctrl.state_dict()  # c = 0.02 after step 3
    assert state["adaptive_entropy"]["coef"] == pytest.approx(0.02)
    again = step_controller(pl.control(eps_std=0.2), total_steps=10)
    again.load_state_dict(state)
    observe_entropy(again, 4, 0.1)
    assert step_data(again, 4)["flexent_entropy_coef"] == pytest.approx(0.02)  # not c_0
    plain_state = dict(state)
    del plain_state["adaptive_entropy"]
    with pytest.raises(ValueError, match="no adaptive entropy state"):
        step_controller(pl.control(eps_std=0.2), total_steps=10).load_state_dict(plain_state)


def test_target_bonus_actuator_coefficient_is_delivered(v):
    """target with the bonus actuator: the strategy's own coefficient is the step's bonus."""
    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.integrations.verl.step import observe_entropy, step_controller, step_data
    from flexent.strategies import get_strategy

    params = {"target": 1.0, "actuator": "bonus", "bonus_max": 0.05, "total_steps": 10}
    pl = FlexentPolicyLossConfig(strategy="target", strategy_params=params)
    assert pl.uses_bonus
    ctrl = step_controller(pl.control(eps_std=0.2), total_steps=10)
    reference = get_strategy("target", **params)  # the same controller, driven by hand
    for step, h in [(1, 1.0), (2, 0.6), (3, 0.4)]:
        observe_entropy(ctrl, step, h)
        reference.weights(step - 1, entropy=h)
        coef = step_data(ctrl, step)["flexent_entropy_coef"]
        assert coef == pytest.approx(reference.bonus_coef())
    assert coef > 0  # entropy fell below H_init: the bonus acts


def test_flexent_bonus_settings_are_checked(v):
    from flexent.integrations.verl import FlexentPolicyLossConfig
    from flexent.integrations.verl.config import check_entropy

    pl = FlexentPolicyLossConfig(strategy="static", entropy_coef=0.01)
    with pytest.raises(ValueError, match=r"actor\.entropy_coeff=0"):
        check_entropy(actor_config(v, pl, calculate_entropy=True, entropy_coeff=0.001))
    with pytest.raises(ValueError, match="calculate_entropy=true"):
        check_entropy(actor_config(v, pl))
    check_entropy(actor_config(v, pl, calculate_entropy=True))
    check_entropy(actor_config(v, FlexentPolicyLossConfig(strategy="static"), entropy_coeff=0.001))
    with pytest.raises(ValueError, match="adaptive_entropy: unknown key"):
        FlexentPolicyLossConfig(strategy="static", adaptive_entropy={"targt": 0.2})
    # the registered loss called by verl's own ppo_loss (no flexent_sync wrapper): refused
    from verl.workers.utils.losses import ppo_loss

    model_output, data = ppo_loss_inputs(*batch(2), {})
    with pytest.raises(RuntimeError, match="trainer_mode=flexent_sync"):
        ppo_loss(actor_config(v, pl, calculate_entropy=True), model_output, data)


@pytest.mark.parametrize(
    ("pl_kw", "user"),
    [
        ({"loss_mode": "flexent_archer"}, "loss_mode=flexent_archer"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile=0.2"),
    ],
)
def test_settings_reading_current_entropy_are_checked(v, pl_kw, user):
    """archer's forks and the high-entropy-minority mask read the current policy's entropy,
    which verl computes in the update only with calculate_entropy=true (or its own bonus,
    entropy_coeff != 0): refused at setup without it, naming the setting and the key; when the
    check is skipped, the loss says the same at the first call once flexent's wrapper ran, and
    asks for flexent_sync when the wrapper did not run."""
    from verl.workers.utils.losses import ppo_loss

    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig
    from flexent.integrations.verl.config import check_entropy

    pl = FlexentPolicyLossConfig(strategy="static", **pl_kw)
    with pytest.raises(ValueError, match=rf"{user} needs .*calculate_entropy=true"):
        check_entropy(actor_config(v, pl))
    check_entropy(actor_config(v, pl, calculate_entropy=True))
    check_entropy(actor_config(v, pl, entropy_coeff=0.001))  # verl's bonus computes it too
    check_entropy(actor_config(v, FlexentPolicyLossConfig(strategy="static")))  # reads none

    cfg = actor_config(v, pl)
    model_output, data = ppo_loss_inputs(*batch(2), {})  # no "entropy" in the model output
    with pytest.raises(RuntimeError, match="calculate_entropy=true") as wrapped:
        FlexentActorLoss(cfg)(model_output, data)
    assert "flexent_sync" not in str(wrapped.value)
    assert cfg.policy_loss.__dict__["_flexent_runtime"] == {}  # the wrapper's mark is cleared
    model_output, data = ppo_loss_inputs(*batch(2), {})
    with pytest.raises(RuntimeError, match="trainer_mode=flexent_sync"):
        ppo_loss(cfg, model_output, data)  # verl's own ppo_loss: flexent's wrapper never ran


def test_region_metrics_are_token_weighted_over_micro_batches(v):
    """Two micro-batches of one mini-batch, theory regions, static band [0.8, 1.28], pi_old's
    entropy H = 1 at every token (a token is expected when -ln p_old <= 1, i.e. p_old = 0.5,
    and surprising for p_old = 0.1):

        micro-batch a, A = +1:  p_old 0.5, r 1.1 (E1) | 0.5, r 1.4 (E1, clipped) | 0.1, r 1 (E2)
        micro-batch b, A = -1:  p_old 0.5, r 1.0 (E3) | 0.1, r 0.7 (E4, clipped)

    E1 is empty in b. Over the 5 tokens: E1 share 2/5, ratio_mean (1.1 + 1.4)/2 = 1.25,
    clip_frac 1/2, pred_dH = -A p (ln p + H) of the unclipped E1 token / 5
    = -0.5 (ln 0.5 + 1) / 5; E4 share 1/5, ratio_mean 0.7, clip_frac 1. verl's own unweighted
    mean of the micro-batch values would give E1 share (2/3 + 0)/2 = 1/3, ratio_mean 0.625 and
    clip_frac 0.25. Runs verl's micro-batch merge (append_to_dict) and its driver's
    _update_actor (rename_dict, reduce_metrics) under flexent_sync's override."""
    import math

    from verl.utils.py_functional import append_to_dict

    from flexent.control import EntropyControl
    from flexent.integrations.verl import (
        FlexentActorLoss,
        FlexentPolicyLossConfig,
        FlexentPPOTrainer,
    )
    from flexent.integrations.verl.step import step_controller

    cfg = actor_config(v, FlexentPolicyLossConfig(strategy="static", region_schemes=["theory"]))
    micro = [
        ([0.5, 0.5, 0.1], [1.1, 1.4, 1.0], 1.0),
        ([0.5, 0.1], [1.0, 0.7], -1.0),
    ]

    class FakeWG:
        def update_actor(self, meta):
            mini: dict = {}
            for p_old, ratio, adv in micro:
                old = torch.tensor([p_old], dtype=torch.float64).log()
                new = old + torch.tensor([ratio], dtype=torch.float64).log()
                mask = torch.ones_like(old, dtype=torch.bool)
                model_output, data = ppo_loss_inputs(
                    old, new, torch.full_like(old, adv), mask, dict(meta.extra_info)
                )
                data["entropy"] = torch.ones_like(old)  # pi_old's, as verl's v1 trainer stores
                _, metrics = FlexentActorLoss(cfg)(model_output, data)
                append_to_dict(mini, metrics)  # as verl's postprocess_batch_func
            return {"metrics": {**mini, "mfu": [0.0]}}

    trainer = object.__new__(FlexentPPOTrainer)
    trainer.trainer_mode = "flexent_sync"
    trainer.config = v.compose(["actor_rollout_ref.rollout.n=2"])
    trainer.actor_rollout_wg, trainer.global_steps = FakeWG(), 1
    trainer.flexent = step_controller(EntropyControl(strategy="static"), total_steps=10)
    metrics: dict = {}
    trainer._update_actor(types.SimpleNamespace(extra_info={}), metrics)

    expected = {
        "E1/share": 2 / 5,
        "E1/ratio_mean": 1.25,
        "E1/clip_frac": 0.5,
        "E1/pred_dH": -0.5 * (math.log(0.5) + 1) / 5,
        "E2/share": 1 / 5,
        "E2/ratio_mean": 1.0,
        "E3/share": 1 / 5,
        "E4/share": 1 / 5,
        "E4/ratio_mean": 0.7,
        "E4/clip_frac": 1.0,
        "E4/pred_dH": 0.0,  # E4's only token is clipped
    }
    for key, value in expected.items():
        assert metrics[f"actor/region/{key}"] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert not [k for k in metrics if k.startswith("actor/flexent/")]  # the pairs are resolved


def test_advantage_shaping_reaches_the_loss(v):
    """aepo with its gate open (rollout entropy 2.0 above 1.05 x H* = 1.05 x 1.0, h_init 1.0):
    the driver ships the shaping, and verl's ppo_loss through flexent's wrapper equals the
    plain static loss on the same batch with every negative advantage set to 0 by hand. Without
    the driver's step data the same setting is an error, not a silently static run."""
    from verl.workers.utils.losses import ppo_loss

    from flexent.integrations.verl import FlexentActorLoss, FlexentPolicyLossConfig
    from flexent.integrations.verl.step import observe_entropy, step_controller, step_data

    pl = FlexentPolicyLossConfig(strategy="aepo", strategy_params={"target": 1.0, "h_init": 1.0})
    cfg = actor_config(v, pl)
    ctrl = step_controller(pl.control(eps_std=0.2), total_steps=10)
    observe_entropy(ctrl, 1, 2.0)
    extra = step_data(ctrl, 1)
    assert extra["flexent_shaping"] == '["aepo", {"gate": 1.0}]'
    old, new, adv, mask = batch(3)
    assert (adv < 0).any() and (adv > 0).any()
    model_output, data = ppo_loss_inputs(old, new, adv, mask, extra)
    got, _ = FlexentActorLoss(cfg)(model_output, data)
    static = FlexentPolicyLossConfig(strategy="static")
    model_output, data = ppo_loss_inputs(old, new, adv.clamp(min=0.0), mask, extra)
    want, _ = ppo_loss(actor_config(v, static), {"log_probs": model_output["log_probs"]}, data)
    model_output, data = ppo_loss_inputs(old, new, adv, mask, extra)
    unshaped, _ = ppo_loss(actor_config(v, static), {"log_probs": model_output["log_probs"]}, data)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    assert float(got) != pytest.approx(float(unshaped), rel=1e-6)  # the shaping did something
    model_output, data = ppo_loss_inputs(old, new, adv, mask, {})
    with pytest.raises(RuntimeError, match="shapes the advantages"):
        FlexentActorLoss(cfg)(model_output, data)

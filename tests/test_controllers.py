"""The loss-weight entropy controllers: the advantage shapings (flexent.control.shaping), the
strategies that fix them per step (``aepo``, ``repo_r``, ``target`` with ``actuator:
entropic``), their checkpoint state, and the TRL adapter applying them before the loss.

Expected values are worked out by hand in the comments; REPO-R's zeta update is checked against
a straight transcription of SkyRL's ``repo_r_update_zeta`` (NovaSky-AI/SkyRL pull request 1896
at 57ec2a2, skyrl/backends/skyrl_train/utils/ppo_utils.py L613-641), written out below."""

from __future__ import annotations

import copy
import itertools
import json
import math

import pytest
import torch

from flexent.control import EntropyControl, StepController
from flexent.control.shaping import shape_advantages
from flexent.strategies import get_strategy, pi_step
from tiny_support import tiny_model


def _lp(*probs: float) -> torch.Tensor:
    """``[1, T]`` log-probabilities of ``probs`` (float32, as the adapters pass them)."""
    return torch.log(torch.tensor([probs]))


# -- the shapings -----------------------------------------------------------------------------


def test_entropic_scales_high_probability_tokens_by_sign():
    """EntroPIC: a token with p > p_high (strict) and A != 0 gets A (1 - alpha) when A > 0 and
    A (1 + alpha) when A < 0; every other token keeps A."""
    a = torch.tensor([[2.0, 2.0, -2.0, -2.0, 0.0, 2.0]])
    #                   p: 0.99 high, 0.5 low, 0.96 high, 0.9 low, 0.99 high (A = 0), 0.95 (= p_high)
    lp = _lp(0.99, 0.5, 0.96, 0.9, 0.99, 0.95)
    # alpha 0.25: 2 * 0.75 = 1.5; -2 * 1.25 = -2.5; p = 0.95 is not > 0.95: kept
    out = shape_advantages("entropic", {"alpha": 0.25, "p_high": 0.95}, a, logprobs=lp)
    assert out[0].tolist() == pytest.approx([1.5, 2.0, -2.5, -2.0, 0.0, 2.0])
    # alpha -0.5 (entropy above target): 2 * 1.5 = 3; -2 * 0.5 = -1
    out = shape_advantages("entropic", {"alpha": -0.5, "p_high": 0.95}, a, logprobs=lp)
    assert out[0].tolist() == pytest.approx([3.0, 2.0, -1.0, -2.0, 0.0, 2.0])
    # alpha 1: the positive high-probability token is dropped, the negative one doubled
    out = shape_advantages("entropic", {"alpha": 1.0, "p_high": 0.95}, a, logprobs=lp)
    assert out[0].tolist() == pytest.approx([0.0, 2.0, -4.0, -2.0, 0.0, 2.0])
    # the cut reads the log-probabilities it is given (the current policy's in the adapters):
    # the same advantages with p 0.5 at token 0 and 0.99 at token 1 swap which one is scaled
    out = shape_advantages(
        "entropic",
        {"alpha": 0.25, "p_high": 0.95},
        a,
        logprobs=_lp(0.5, 0.99, 0.9, 0.96, 0.99, 0.95),
    )
    assert out[0].tolist() == pytest.approx([2.0, 1.5, -2.0, -2.5, 0.0, 2.0])
    # a lower cut p_high 0.4 takes in the p 0.5 and 0.9 tokens too
    out = shape_advantages("entropic", {"alpha": 0.25, "p_high": 0.4}, a, logprobs=lp)
    assert out[0].tolist() == pytest.approx([1.5, 1.5, -2.5, -2.5, 0.0, 1.5])


def test_aepo_gate_drops_negative_advantages_only_when_open():
    a = torch.tensor([[1.5, -0.5, 0.0, -2.0, 0.25]])
    lp = _lp(0.9, 0.1, 0.5, 0.99, 0.3)
    # gate 1: every A < 0 -> 0; A >= 0 unchanged (the log-probabilities play no part)
    assert shape_advantages("aepo", {"gate": 1.0}, a, logprobs=lp).tolist() == [
        [1.5, 0.0, 0.0, 0.0, 0.25]
    ]
    # gate 0: nothing changes
    assert torch.equal(shape_advantages("aepo", {"gate": 0.0}, a, logprobs=lp), a)


def test_repo_r_rescales_with_clamps():
    """REPO-R: A > 0 -> max(A (1 - zeta logp), 0); A < 0 -> min(A (1 + zeta logp), 0); A = 0
    kept; logp clamped at -20 (SkyRL's repo_r_rescale_advantages)."""
    a = torch.tensor([[1.0, 1.0, -1.0, -1.0, 0.0, 2.0, -2.0]])
    lp = torch.tensor([[-2.0, -0.5, -2.0, -0.5, -3.0, -math.inf, -30.0]])
    # zeta 0.1:
    #   A  1, logp -2:    1 (1 + 0.2)              =  1.2
    #   A  1, logp -0.5:  1 (1 + 0.05)             =  1.05
    #   A -1, logp -2:   -1 (1 - 0.2)              = -0.8
    #   A -1, logp -0.5: -1 (1 - 0.05)             = -0.95
    #   A  0:                                         0
    #   A  2, logp -inf -> -20:  2 (1 + 2)         =  6
    #   A -2, logp -30  -> -20: -2 (1 - 2) = 2 -> min(2, 0) = 0 (never flips sign)
    out = shape_advantages("repo_r", {"zeta": 0.1}, a, logprobs=lp)
    assert out[0].tolist() == pytest.approx([1.2, 1.05, -0.8, -0.95, 0.0, 6.0, 0.0])
    # zeta -0.1 (entropy above target):
    #   A  1, logp -2:   1 (1 - 0.2) = 0.8;   A -1, logp -2: -1 (1 + 0.2) = -1.2
    #   A  1, logp -30 -> -20: 1 (1 - 2) = -1 -> max(-1, 0) = 0;  A -1, logp -5: -1 (1 + 0.5) = -1.5
    out = shape_advantages(
        "repo_r",
        {"zeta": -0.1},
        torch.tensor([[1.0, -1.0, 1.0, -1.0]]),
        logprobs=torch.tensor([[-2.0, -2.0, -30.0, -5.0]]),
    )
    assert out[0].tolist() == pytest.approx([0.8, -1.2, 0.0, -1.5])


def test_shaping_keeps_dtype_and_detaches_logprobs():
    """The shaped advantages have the advantages' dtype, and no gradient flows into logp."""
    a = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    lp = torch.log(torch.tensor([[0.99, 0.99]])).requires_grad_(True)
    for kind, params in (("entropic", {"alpha": 0.5, "p_high": 0.95}), ("repo_r", {"zeta": 0.1})):
        out = shape_advantages(kind, params, a, logprobs=lp)
        assert out.dtype == torch.float64 and not out.requires_grad, kind


def test_shaping_rejects_unknown_kinds_and_parameters():
    a, lp = torch.ones(1, 2), torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"unknown advantage shaping 'entropy'.*'aepo'"):
        shape_advantages("entropy", {"gate": 1.0}, a, logprobs=lp)
    with pytest.raises(ValueError, match=r"shaping 'aepo' takes \['gate'\], got \[\]"):
        shape_advantages("aepo", {}, a, logprobs=lp)
    with pytest.raises(ValueError, match=r"'entropic' takes \['alpha', 'p_high'\]"):
        shape_advantages("entropic", {"alpha": 0.5}, a, logprobs=lp)
    with pytest.raises(ValueError, match=r"'repo_r' takes \['zeta'\], got \['gate', 'zeta'\]"):
        shape_advantages("repo_r", {"zeta": 0.1, "gate": 1.0}, a, logprobs=lp)


# -- repo_r: zeta against SkyRL's update -------------------------------------------------------


def skyrl_repo_r_update_zeta(
    zeta: float, current_entropy: float, target_entropy: float, zeta_min: float, zeta_max: float
) -> float:
    """SkyRL PR 1896 (57ec2a2) ``repo_r_update_zeta``, transcribed line by line."""
    if current_entropy > target_entropy:
        if zeta >= 0:
            zeta /= 2.0
            if zeta < zeta_min:
                zeta = -zeta_min  # flip the sign if needed
        else:
            zeta = max(-zeta_max, zeta * 2)
    elif current_entropy < target_entropy:
        if zeta >= 0:
            zeta = min(zeta_max, zeta * 2) if zeta > 0.0 else zeta_min
        else:
            zeta /= 2
            if zeta > -zeta_min:
                zeta = zeta_min  # flip the sign
    return zeta


# zeta_min 0.01, zeta_max 0.08, start 0.02, H* = 1.0 nats (absolute); step 0 only measures.
# Halving and doubling are exact in binary floating point, so the values compare exactly.
REPO_R_PATH = [
    (0.5, 0.02),  # k 0: measured, no update
    (0.5, 0.04),  # below target, zeta > 0: grow
    (0.5, 0.08),
    (0.5, 0.08),  # capped at zeta_max (0.16 -> 0.08)
    (1.5, 0.04),  # above target, zeta > 0: halve
    (1.5, 0.02),
    (1.5, 0.01),  # 0.01 is not < zeta_min: kept
    (1.5, -0.01),  # 0.005 < zeta_min: flip to -zeta_min
    (1.5, -0.02),  # above target, zeta < 0: grow in magnitude
    (1.5, -0.04),
    (1.5, -0.08),
    (1.5, -0.08),  # capped at -zeta_max
    (1.0, -0.08),  # at target: unchanged
    (0.5, -0.04),  # below target, zeta < 0: halve
    (0.5, -0.02),
    (0.5, -0.01),  # -0.01 is not > -zeta_min: kept
    (0.5, 0.01),  # -0.005 > -zeta_min: flip to +zeta_min
    (0.5, 0.02),
]


def test_repo_r_zeta_follows_skyrl_update():
    T = len(REPO_R_PATH) - 1
    s = get_strategy("repo_r", total_steps=T, target=1.0, relative=False, h_init=1.0,
                     zeta=0.02, zeta_min=0.01, zeta_max=0.08)  # fmt: skip
    ref = 0.02
    for k, (h, hand) in enumerate(REPO_R_PATH):
        assert s.weights(k, entropy=h) == (0.0, 0.0)
        if k > 0:
            ref = skyrl_repo_r_update_zeta(ref, h, 1.0, 0.01, 0.08)
        assert s.zeta == ref == pytest.approx(hand), k
        assert s.shaping() == ("repo_r", {"zeta": ref})
        assert s.metrics()["control/zeta"] == ref


@pytest.mark.parametrize(("h", "expected"), [(0.5, 0.01), (1.5, -0.01)])
def test_repo_r_zeta_zero_starts_at_zeta_min(h, expected):
    """zeta = 0: below target SkyRL bootstraps to +zeta_min; above, 0 / 2 < zeta_min flips to
    -zeta_min."""
    s = get_strategy("repo_r", total_steps=4, target=1.0, relative=False, h_init=1.0,
                     zeta=0.0, zeta_min=0.01, zeta_max=0.08)  # fmt: skip
    s.weights(0, entropy=h)
    assert s.zeta == 0.0  # step 0 measures
    s.weights(1, entropy=h)
    assert s.zeta == skyrl_repo_r_update_zeta(0.0, h, 1.0, 0.01, 0.08) == expected


def test_repo_r_validation():
    with pytest.raises(ValueError, match=r"zeta_min must be a finite number > 0, got 0\.0"):
        get_strategy("repo_r", total_steps=4, zeta_min=0.0)
    with pytest.raises(ValueError, match=r"\|zeta\| <= zeta_max.*zeta=0.1"):
        get_strategy("repo_r", total_steps=4, zeta=0.1, zeta_max=0.05)
    with pytest.raises(ValueError, match="zeta_min <= zeta_max"):
        get_strategy("repo_r", total_steps=4, zeta_min=0.1, zeta_max=0.05)


# -- aepo: the hysteresis gate on a moving H* -----------------------------------------------------

# preset id, T = 10, h_init 2.0: H*/H_init = 1 + k/10 up to k = 5 (1.5), then 1.5 - (k - 5)/5.
# high 1.05, low 0.95: opens when H > 1.05 H*, closes when H < 0.95 H*, else holds.
#   k  H*   open above  close below  H     gate
AEPO_PATH = [
    (2.0, 2.1, 1.9, 2.0, 0),  # between the marks; starts closed
    (2.2, 2.31, 2.09, 2.4, 1),  # above 2.31: open
    (2.4, 2.52, 2.28, 2.4, 1),  # between: stays open
    (2.6, 2.73, 2.47, 2.5, 1),  # below H* but above 2.47: stays open
    (2.8, 2.94, 2.66, 2.5, 0),  # below 2.66: closes
    (3.0, 3.15, 2.85, 3.0, 0),  # at H*: stays closed
    (2.6, 2.73, 2.47, 2.9, 1),  # H* came down: 2.9 > 2.73 opens
    (2.2, 2.31, 2.09, 2.2, 1),
    (1.8, 1.89, 1.71, 1.75, 1),  # below H*, above 1.71: stays open
    (1.4, 1.47, 1.33, 1.3, 0),  # below 1.33: closes
    (1.0, 1.05, 0.95, 1.0, 0),
]


def test_aepo_hysteresis_follows_the_trajectory():
    s = get_strategy("aepo", total_steps=10, preset="id", h_init=2.0)
    for k, (target, _, _, h, gate) in enumerate(AEPO_PATH):
        assert s.weights(k, entropy=h) == (0.0, 0.0)
        m = s.metrics()
        assert m["control/target"] == pytest.approx(target), k
        assert m["control/gate"] == gate, k
        assert s.shaping() == ("aepo", {"gate": float(gate)}), k


def test_aepo_validation():
    with pytest.raises(ValueError, match=r"aepo needs low < high, got low=1\.1, high=1\.05"):
        get_strategy("aepo", total_steps=4, low=1.1)
    with pytest.raises(ValueError, match=r"high must be a finite number > 0, got -1\.0"):
        get_strategy("aepo", total_steps=4, high=-1.0)


# -- target with the entropic actuator ------------------------------------------------------------


def test_target_entropic_actuator_follows_the_pi_law():
    """target 1.0 relative, h_init 2.0 (H* = 2 nats), kp 2, ki 0.5; e = (2 - H) / 2:
    k 0: H 2.0, e 0: I 0, u 0
    k 1: H 1.9, e 0.05: I 0.05, u = 2 * 0.05 + 0.5 * 0.05 = 0.125
    k 2: H 1.0, e 0.5: 1.0 + 0.5 * 0.55 = 1.275 > 1 -> I kept 0.05, u = clip(1.025) = 1
    k 3: H 2.6, e -0.3: I -0.25, u = -0.6 - 0.125 = -0.725
    The clip stays static, no bonus; u is EntroPIC's alpha (with p_high 0.95)."""
    s = get_strategy("target", total_steps=10, target=1.0, h_init=2.0, kp=2.0, ki=0.5,
                     actuator="entropic")  # fmt: skip
    assert s.shapes_advantages and not s.uses_bonus
    hand = [0.0, 0.125, 1.0, -0.725]
    integral = 0.0
    for k, (h, u_hand) in enumerate(zip((2.0, 1.9, 1.0, 2.6), hand, strict=True)):
        assert s.weights(k, entropy=h) == (0.0, 0.0)
        u, integral = pi_step((2.0 - h) / 2.0, integral, kp=2.0, ki=0.5)
        assert u == pytest.approx(u_hand, abs=1e-12), k
        kind, params = s.shaping()
        assert kind == "entropic" and params == {"alpha": u, "p_high": 0.95}, k
        assert s.bonus_coef() == 0.0
        m = s.metrics()
        assert m["control/alpha"] == m["control/u"] == u
    assert s.integral == pytest.approx(-0.25)
    custom = get_strategy("target", total_steps=10, actuator="entropic", p_high=0.8)
    custom.weights(0, entropy=1.0)
    assert custom.shaping() == ("entropic", {"alpha": 0.0, "p_high": 0.8})


def test_target_entropic_settings_are_checked():
    with pytest.raises(ValueError, match="p_high is the 'entropic' actuator's; actuator is 'clip'"):
        get_strategy("target", total_steps=10, p_high=0.9)
    with pytest.raises(
        ValueError, match=r"bonus_max must be > 0 with actuator.*0\.01 with 'entropic'"
    ):
        get_strategy("target", total_steps=10, actuator="entropic", bonus_max=0.01)
    with pytest.raises(ValueError, match="p_high must be in"):
        get_strategy("target", total_steps=10, actuator="entropic", p_high=1.0)
    # the other actuators never shape
    s = get_strategy("target", total_steps=10)
    s.weights(0, entropy=1.0)
    assert not s.shapes_advantages and s.shaping() is None


# -- checkpoints ------------------------------------------------------------------------------------

SHAPERS = [
    ("aepo", {"preset": "id"}),
    ("repo_r", {"target": 1.0, "zeta": 0.004, "zeta_min": 0.001, "zeta_max": 0.05}),
    ("target", {"preset": "did", "actuator": "entropic"}),
]


def _entropies(n: int) -> list[float]:
    # oscillates around H_init = 1.0, so that every controller's output changes along the run
    return [1.0 + 0.6 * math.sin(0.45 * k) for k in range(n)]


def _shaping_run(strategy, entropies, start=0):
    out, states = [], []
    for k in range(start, len(entropies)):
        out.append((strategy.weights(k, entropy=entropies[k]), strategy.shaping()))
        states.append(json.dumps(strategy.state_dict()))
    return out, states


@pytest.mark.parametrize(("name", "params"), SHAPERS)
def test_shaping_state_round_trip_resume(name, params):
    T = 40
    entropies = _entropies(T + 1)
    full, states = _shaping_run(get_strategy(name, total_steps=T, **params), entropies)
    changes = sum(a[1] != b[1] for a, b in itertools.pairwise(full))
    assert changes >= 2  # the shaping really moves along the run
    for j in (0, 1, 13, 27, T - 1):
        resumed = get_strategy(name, total_steps=T, **params)
        resumed.load_state_dict(json.loads(states[j]))
        rest, _ = _shaping_run(resumed, entropies, start=j + 1)
        assert rest == full[j + 1 :], j


@pytest.mark.parametrize(("name", "params"), SHAPERS)
def test_step_controller_keeps_the_shaping(name, params):
    control = EntropyControl(strategy=name, strategy_params=params)
    entropies = _entropies(10)
    straight = StepController(control, total_steps=9)
    path = []
    for k, h in enumerate(entropies):
        straight.observe_entropy(h)
        straight.begin_step(k)
        path.append(straight.shaping)
    first = StepController(control, total_steps=9)
    for k, h in enumerate(entropies[:5]):
        first.observe_entropy(h)
        first.begin_step(k)
    saved = json.loads(json.dumps(first.state_dict()))
    assert saved["shaping"] == [path[4][0], path[4][1]]
    again = StepController(control, total_steps=9)
    again.load_state_dict(saved)
    assert again.shaping == path[4] and again.step == 4
    for k, h in enumerate(entropies[5:], start=5):
        again.observe_entropy(h)
        again.begin_step(k)
        assert again.shaping == path[k], k
    # a state written before the shaping existed loads as "no shaping" until the next step
    old = {key: value for key, value in saved.items() if key != "shaping"}
    older = StepController(control, total_steps=9)
    older.load_state_dict(old)
    assert older.shaping is None
    a = torch.tensor([[1.0, -1.0]])
    assert older.shape_advantages(a, logprobs=torch.zeros(1, 2)) is a


def test_step_controller_applies_the_held_shaping():
    """aepo with h_init 0.1 (H* = 0.1 nats): H 2.0 > 1.05 * 0.1 opens the gate."""
    c = StepController(EntropyControl(strategy="aepo", strategy_params={"h_init": 0.1}),
                       total_steps=4)  # fmt: skip
    c.observe_entropy(2.0)
    c.begin_step(0)
    assert c.shaping == ("aepo", {"gate": 1.0})
    assert c.metrics()["control/gate"] == 1.0 and c.entropy_coef == 0.0
    a = torch.tensor([[1.0, -1.0, 0.0]])
    assert c.shape_advantages(a, logprobs=torch.zeros(1, 3)).tolist() == [[1.0, 0.0, 0.0]]


# -- the TRL adapter ---------------------------------------------------------------------------


def _reward(completions, **kwargs):
    return [float(len(c) % 2) for c in completions]


def _trainer(tmp_path, model, tokenizer, control):
    from datasets import Dataset
    from trl import GRPOConfig

    from flexent.integrations.trl import FlexentGRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=6, report_to=[], loss_type="dapo",
                      steps_per_generation=2, gradient_accumulation_steps=1, seed=0)  # fmt: skip
    trainer = FlexentGRPOTrainer(
        model=copy.deepcopy(model), reward_funcs=_reward, args=args,
        train_dataset=Dataset.from_dict({"prompt": ["12+3=", "4*5=", "7-2=", "9+9="]}),
        processing_class=tokenizer, entropy_control=control,
    )  # fmt: skip
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop
    trainer.state.max_steps = 10  # known inside train(); the strategy's total_steps
    return trainer


def _batch(tokenizer, model, advantages):
    """4 sequences (two with padding); pi_old = pi_theta +- up to 0.4 nats. Returns the inputs
    and pi_theta's log-probabilities of the completion tokens."""
    g = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(5, len(tokenizer), (4, 3), generator=g)
    completion_ids = torch.randint(5, len(tokenizer), (4, 5), generator=g)
    completion_mask = torch.ones(4, 5, dtype=torch.long)
    completion_mask[1, 3:] = 0
    completion_mask[3, 4:] = 0
    with torch.no_grad():
        logits = model(torch.cat([prompt_ids, completion_ids], dim=1)).logits[:, 2:-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, completion_ids[..., None])[..., 0]
    noise = (torch.rand(4, 5, generator=g) - 0.5) * 0.8
    inputs = {
        "prompt_ids": prompt_ids, "prompt_mask": torch.ones(4, 3, dtype=torch.long),
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "advantages": torch.tensor(advantages), "num_items_in_batch": completion_mask.sum() * 2,
        "old_per_token_logps": logp + noise,
    }  # fmt: skip
    return inputs, logp


def _loss_and_grads(trainer, inputs):
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, dict(inputs))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                           if p.grad is not None}  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("trl")
    return tiny_model("0123456789+-*=")


def test_trl_aepo_open_gate_is_static_on_zeroed_negatives(tmp_path, tiny):
    """aepo with the gate open (h_init 0.1, H 2.0 > 1.05 * 0.1) gives exactly the loss and the
    gradients of a static run whose negative advantages were set to 0 by hand."""
    model, tokenizer = tiny
    aepo = _trainer(tmp_path / "a", model, tokenizer,
                    EntropyControl(strategy="aepo", strategy_params={"h_init": 0.1}))  # fmt: skip
    aepo.controller.observe_entropy(2.0)
    static = _trainer(tmp_path / "s", model, tokenizer, EntropyControl(strategy="static"))
    inputs, _ = _batch(tokenizer, model, [1.0, -1.0, 0.5, -0.5])
    zeroed = dict(inputs, advantages=torch.tensor([1.0, 0.0, 0.5, 0.0]))
    loss_a, grads_a = _loss_and_grads(aepo, inputs)
    loss_s, grads_s = _loss_and_grads(static, zeroed)
    assert aepo._metrics["train"]["control/gate"][-1] == 1.0
    assert torch.equal(loss_a, loss_s), (loss_a, loss_s)
    assert grads_a.keys() == grads_s.keys() and grads_a
    for name, g in grads_s.items():
        assert torch.equal(grads_a[name], g), name
    # and the gate really changed something: the unshaped batch gives another loss
    loss_plain, _ = _loss_and_grads(static, inputs)
    assert not torch.allclose(loss_plain, loss_s)


def test_trl_entropic_shapes_on_current_logprobs(tmp_path, tiny):
    """target/entropic: the loss receives the advantages scaled on the tokens whose CURRENT
    probability is above p_high. kp 1, ki 0, h_init 2.0, target 1.0, H 1.5:
    e = (2.0 - 1.5) / 2.0 = 0.25 = u = alpha: A > 0 -> 0.75 A, A < 0 -> 1.25 A."""
    model, tokenizer = tiny
    inputs, logp = _batch(tokenizer, model, [1.0, -1.0, 0.5, -0.5])
    probs = logp.exp().flatten().sort().values
    p_high = float((probs[9] + probs[10]) / 2)  # about half the tokens above it
    control = EntropyControl(strategy="target", strategy_params={
        "target": 1.0, "h_init": 2.0, "kp": 1.0, "ki": 0.0, "actuator": "entropic",
        "p_high": p_high,
    })  # fmt: skip
    trainer = _trainer(tmp_path, model, tokenizer, control)
    trainer.controller.observe_entropy(1.5)
    seen = {}
    loss_fn = trainer._loss_fn

    def capture(logprobs, old_logprobs, advantages, mask, **kwargs):
        seen.update(logprobs=logprobs.detach(), old=old_logprobs, advantages=advantages)
        return loss_fn(logprobs, old_logprobs, advantages, mask, **kwargs)

    trainer._loss_fn = capture
    _loss_and_grads(trainer, inputs)
    assert trainer._metrics["train"]["control/alpha"][-1] == pytest.approx(0.25)
    a = inputs["advantages"][:, None].expand(4, 5)
    cut = math.log(p_high)
    high = seen["logprobs"] > cut
    expected = torch.where(high, torch.where(a > 0, 0.75 * a, 1.25 * a), a)
    assert torch.allclose(seen["advantages"], expected, rtol=1e-6, atol=0.0)
    # the batch separates the two readings: pi_old's probabilities would cut other tokens
    assert high.any() and (~high).any() and not torch.equal(high, seen["old"] > cut)


def test_repo_r_adapts_once_per_rollout_batch_in_the_step_controller():
    """TRL trains 4 optimizer steps on one rollout batch here: the controller observes the
    batch's entropy once, and zeta adapts once per observation (SkyRL: once per iteration),
    not at every step on the same value. H_init 1.0 (step 0 measures, no update); batch 2 at
    0.8 < target: 1e-3 -> 2e-3 once, then steps 5-7 hold it; batch 3 at 0.7: -> 4e-3. A resumed
    controller (state after step 5, mid-batch) does not adapt again on the old observation."""
    from flexent.control import EntropyControl, StepController

    control = EntropyControl(strategy="repo_r", strategy_params={"target": 1.0})
    c = StepController(control, total_steps=12)
    zetas = []
    for k in range(12):
        if k % 4 == 0:
            c.observe_entropy({0: 1.0, 4: 0.8, 8: 0.7}[k])
        c.begin_step(k)
        zetas.append(c.shaping[1]["zeta"])
        if k == 5:
            saved = json.loads(json.dumps(c.state_dict()))
    assert zetas == [1e-3] * 4 + [2e-3] * 4 + [4e-3] * 4
    again = StepController(control, total_steps=12)
    again.load_state_dict(saved)
    again.begin_step(6)
    assert again.shaping[1]["zeta"] == 2e-3


def test_shaping_strategies_refuse_a_loss_that_averages_the_advantage():
    """gmpo's loss uses the sequence mean of A: a per-token reweighting would be averaged away,
    so the config is refused naming both; a token-level loss and a non-shaping target pass."""
    from flexent.control import EntropyControl

    for strategy, params in [("aepo", {}), ("repo_r", {}), ("target", {"actuator": "entropic"})]:
        with pytest.raises(ValueError, match=r"strategy: .* loss 'gmpo' averages the advantage"):
            EntropyControl(strategy=strategy, strategy_params=params, loss="gmpo")
        EntropyControl(strategy=strategy, strategy_params=params, loss="ppo_clip")
    EntropyControl(strategy="target", loss="gmpo")


def test_adaptive_coefficient_moves_once_per_rollout_batch():
    """Skywork-OR1's coefficient (c_0 0, target 0.5, delta 0.01) with 4 optimizer steps per
    rollout batch: batch 1 at H 0.3 (<= target) applies c = 0 and moves it to 0.01 once; its
    3 later steps apply the same 0; batch 2 at 0.3 applies 0.01 (-> 0.02); batch 3 at 0.7
    applies 0 (-> 0.01). Applied per step: 0 x4, 0.01 x4, 0 x4."""
    from flexent.control import EntropyControl, StepController

    control = EntropyControl(adaptive_entropy={"target": 0.5, "delta": 0.01})
    c = StepController(control, total_steps=12)
    applied = []
    for k in range(12):
        if k % 4 == 0:
            c.observe_entropy({0: 0.3, 4: 0.3, 8: 0.7}[k])
        c.begin_step(k)
        applied.append(c.entropy_coef)
    assert applied == pytest.approx([0.0] * 4 + [0.01] * 4 + [0.0] * 4)
    assert c.state_dict()["adaptive_entropy"]["coef"] == pytest.approx(0.01)


def test_a_user_strategy_without_fresh_still_works():
    """A subclass overriding weights(step, *, entropy), the documented protocol, is called
    without the fresh keyword; a shaping strategy object is refused with gmpo like a name."""
    from flexent.control import EntropyControl, StepController
    from flexent.strategies import Static, get_strategy

    class Mine(Static):
        def weights(self, step, *, entropy=None):
            return 0.25, 0.0

    c = StepController(EntropyControl(strategy=Mine(total_steps=4)), total_steps=4)
    c.begin_step(0)
    assert c.weights == (0.25, 0.0)
    with pytest.raises(ValueError, match="averages the advantage"):
        EntropyControl(strategy=get_strategy("aepo", total_steps=10), loss="gmpo")

"""Advantage estimators (flexent.advantages): hand-derived GRPO and QAE values, the group layout
(ids, NaN, singletons), parity with verl 0.9.1's GRPO and with the QAE authors' one-line change
to it, verl's registration of ``flexent_qae`` and the TRL 1.16 recompute on a dict shaped like
the one ``_generate_and_score_completions`` returns."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from flexent.advantages import (
    check_advantage,
    get_advantage,
    grpo,
    list_advantages,
    qae,
    register_advantage,
)

NAN = float("nan")
S3 = math.sqrt(3.0)  # 1 / std of two 1s and two 0s: std = sqrt(1/3)


def close(got: torch.Tensor, want: list[float], atol: float = 1e-6) -> None:
    torch.testing.assert_close(got, torch.tensor(want, dtype=got.dtype), atol=atol, rtol=0)


# ---------------------------------------------------------------- registry


def test_registry_names_and_errors() -> None:
    assert list_advantages() == ["grpo", "qae"]
    assert get_advantage("qae") is qae
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'mean'.*grpo, qae"):
        get_advantage("mean")
    with pytest.raises(ValueError, match=r"'grpo' is already registered \(by flexent.advantages"):
        register_advantage("grpo")(grpo)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([("name", "qae")], "must be a mapping"),
        ({"params": {"k": 0.4}}, r"keys \['name', 'params'\] \(name required\)"),
        ({"name": "qae", "k": 0.4}, r"got \['k', 'name'\]"),
        ({"name": "quantile"}, "unknown advantage estimator 'quantile'"),
        ({"name": "qae", "params": [0.4]}, "params must be a mapping"),
        (
            {"name": "grpo", "params": {"k": 0.4}},
            r"'grpo' got unknown parameters \['k'\]; it accepts \[\]",
        ),
        ({"name": "qae", "params": {"scale": False}}, r"unknown parameters \['scale'\]"),
        ({"name": "qae", "params": {"k": 1.0}}, r"k must lie in \(0, 1\), got 1.0 .*'grpo'"),
        ({"name": "qae", "params": {"k": 0}}, r"k must lie in \(0, 1\), got 0"),
        ({"name": "qae", "params": {"k": True}}, "got True"),
        (
            {"name": "qae", "params": {"interpolation": "cubic"}},
            r"interpolation must be one of .*'cubic'",
        ),
    ],
)
def test_check_advantage_names_the_problem(spec, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_advantage(spec)


def test_check_advantage_accepts() -> None:
    assert check_advantage({}) == {}
    assert check_advantage({"name": "grpo"}) == {"name": "grpo", "params": {}}
    assert check_advantage({"name": "qae", "params": None}) == {"name": "qae", "params": {}}
    spec = {"name": "qae", "params": {"k": 0.6, "interpolation": "inverted_cdf"}}
    assert check_advantage(spec) == spec


# ---------------------------------------------------------------- GRPO by hand


def test_grpo_hand_values() -> None:
    # group 1 [1, 0, 0, 0]: mean 1/4; unbiased var = (0.75^2 + 3 * 0.25^2) / 3 = 0.25, std 0.5
    #   -> (0.75, -0.25 x3) / 0.5 = 1.5, -0.5, -0.5, -0.5
    # group 2 [2, 4, 9, 9]: mean 6; deviations -4, -2, 3, 3; var = (16 + 4 + 9 + 9) / 3 = 38/3,
    #   std = 3.559026 -> -1.123903, -0.561951, 0.842927, 0.842927
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 4.0, 9.0, 9.0])
    s = math.sqrt(38 / 3)
    want = [1.5, -0.5, -0.5, -0.5, -4 / s, -2 / s, 3 / s, 3 / s]
    close(grpo(r, 4, eps=0.0), want)
    # eps in the denominator: group 1 divides by 0.5 + 0.1 = 0.6: 0.75 / 0.6 = 1.25, -0.25 / 0.6
    close(grpo(r, 4, eps=0.1)[:4], [1.25, -0.25 / 0.6, -0.25 / 0.6, -0.25 / 0.6])
    # scale=False (Dr. GRPO): r - mean = 0.75, -0.25 x3, -4, -2, 3, 3
    close(grpo(r, 4, scale=False), [0.75, -0.25, -0.25, -0.25, -4.0, -2.0, 3.0, 3.0])
    # float64 in, float64 out
    assert grpo(r.double(), 4).dtype == torch.float64


# ---------------------------------------------------------------- QAE by hand


def test_qae_binary_groups_hand_values() -> None:
    # K = 0.4, G = 4: torch.quantile's linear position K (G - 1) = 1.2, between sorted[1] and [2]
    # [1,0,0,0] sorted 0,0,0,1: Q = 0;  std 0.5 -> (1 - 0) / 0.5 = 2, the failures 0
    # [1,1,1,0] sorted 0,1,1,1: Q = 1;  std 0.5 -> the successes 0, the failure -1 / 0.5 = -2
    # [1,1,0,0] sorted 0,0,1,1: Q = 0 + 0.2 (1 - 0) = 0.2; std sqrt(1/3):
    #   (1 - 0.2) sqrt(3) = 1.385641, (0 - 0.2) sqrt(3) = -0.346410
    # [1,1,1,1] and [0,0,0,0]: Q = the reward, advantage exactly 0
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    want = [2.0, 0, 0, 0, 0, 0, 0, -2.0, 0.8 * S3, 0.8 * S3, -0.2 * S3, -0.2 * S3] + [0.0] * 8
    got = qae(r, 4, k=0.4, eps=0.0)
    close(got, want)
    assert got[12:].eq(0).all()  # exactly


def test_qae_continuous_rewards_every_interpolation() -> None:
    # [2, 4, 9], K = 0.4: position 0.4 * 2 = 0.8 between 2 and 4; std: mean 5, deviations
    # -3, -1, 4, var = 26 / 2 = 13, std sqrt(13) = 3.605551.
    #   linear:   2 + 0.8 (4 - 2) = 3.6 -> (-1.6, 0.4, 5.4) / sqrt(13)
    #   lower:    sorted[0] = 2         -> (0, 2, 7) / sqrt(13)
    #   higher:   sorted[1] = 4         -> (-2, 0, 5) / sqrt(13)
    #   nearest:  round(0.8) = 1 -> 4   -> (-2, 0, 5) / sqrt(13)
    #   midpoint: (2 + 4) / 2 = 3       -> (-1, 1, 6) / sqrt(13)
    #   inverted_cdf: smallest r with F(r) >= 0.4: F(2) = 1/3, F(4) = 2/3 -> 4
    r = torch.tensor([9.0, 2.0, 4.0])  # order inside the group does not matter
    s = math.sqrt(13.0)
    baselines = {
        "linear": 3.6,
        "lower": 2.0,
        "higher": 4.0,
        "nearest": 4.0,
        "midpoint": 3.0,
        "inverted_cdf": 4.0,
    }
    for method, b in baselines.items():
        got = qae(r, 3, k=0.4, interpolation=method, eps=0.0)
        close(got, [(9 - b) / s, (2 - b) / s, (4 - b) / s], atol=1e-5)
        close(qae(r, 3, k=0.4, interpolation=method, scale=False), [9 - b, 2 - b, 4 - b], 1e-5)


@pytest.mark.parametrize("k", [0.4, 0.6])
def test_qae_two_regime_gate_binary_g8(k) -> None:
    # G = 8 binary rewards with s successes, p = s / 8. The paper's gate: Q_K = 0 when p <= 1 - K
    # (hard: only successes move, by +1), else Q_K = 1 (easy: only failures move, by -1); exact
    # for the empirical quantile (inverted_cdf). torch.quantile's linear position K * 7 (2.8 for
    # K = 0.4, 4.2 for K = 0.6) lands between a 0 and a 1 for exactly one s: with n0 = 8 - s
    # zeros sorted first, sorted[2] = 0 and sorted[3] = 1 when n0 = 3 (s = 5): Q = 0.8;
    # sorted[4] = 0 and sorted[5] = 1 when n0 = 5 (s = 3): Q = 0.2.
    fractional = {0.4: (5, 0.8), 0.6: (3, 0.2)}[k]
    for s in range(9):
        r = torch.tensor([1.0] * s + [0.0] * (8 - s))
        gate = 0.0 if s / 8 <= 1 - k else 1.0
        close(qae(r, 8, k=k, interpolation="inverted_cdf", scale=False), (r - gate).tolist())
        linear = fractional[1] if s == fractional[0] else gate
        close(qae(r, 8, k=k, scale=False), (r - linear).tolist())
        # zero advantages: the 8 - s failures on a hard group, the s successes on an easy one
        zeros = int((qae(r, 8, k=k, interpolation="inverted_cdf") == 0).sum())
        assert zeros == (8 if s in (0, 8) else (8 - s if gate == 0.0 else s))


def test_qae_default_is_k_04_linear_std_scaled_eps_1e6() -> None:
    # [1,1,0,0]: Q_0.4 = 0.2, std sqrt(1/3) = 0.577350; (1 - 0.2) / (0.577350 + 1e-6) = 1.385639
    r = torch.tensor([1.0, 1.0, 0.0, 0.0])
    sd = 1 / S3
    close(qae(r, 4), [0.8 / (sd + 1e-6)] * 2 + [-0.2 / (sd + 1e-6)] * 2)


# ---------------------------------------------------------------- the group layout


def test_group_ids_any_order_and_size_nan_and_singletons() -> None:
    # ids 7: rewards 1, 0 (positions 0, 2); id 3: 0, 0, 1 (positions 1, 3, 5); id 9: 1 (alone);
    # id 5: NaN, 1, 0 (an unscorable response: left out, advantage 0).
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, NAN, 1.0, 0.0])
    ids = torch.tensor([7, 3, 7, 3, 9, 3, 5, 5, 5])
    # grpo, no scaling: id 7 mean 0.5 -> 0.5, -0.5; id 3 mean 1/3 -> -1/3, -1/3, 2/3;
    # id 9 alone -> 0; id 5 over {1, 0}: mean 0.5 -> NaN row 0, 0.5, -0.5
    want = [0.5, -1 / 3, -0.5, -1 / 3, 0.0, 2 / 3, 0.0, 0.5, -0.5]
    close(grpo(r, ids, scale=False), want)
    # qae K = 0.4 linear: id 7 [0, 1] position 0.4 -> Q 0.4: 0.6, -0.4; id 3 sorted 0, 0, 1
    # position 0.8 -> Q 0: 0, 0, 1; id 5 over {0, 1}: Q 0.4 -> 0, 0.6, -0.4
    want = [0.6, 0.0, -0.4, 0.0, 0.0, 1.0, 0.0, 0.6, -0.4]
    close(qae(r, ids, scale=False), want)
    # ids [0, 0, 1, 1] and group size 2 are the same layout: [1, 0] twice, Q_0.4 = 0.4,
    # std sqrt(0.5) = 0.707107 -> 0.6 / (0.707107 + 1e-6), -0.4 / (0.707107 + 1e-6)
    r4 = torch.tensor([1.0, 0.0, 1.0, 0.0])
    d = math.sqrt(0.5) + 1e-6
    for groups in (torch.tensor([0, 0, 1, 1]), 2):
        close(qae(r4, groups), [0.6 / d, -0.4 / d] * 2)


def test_singleton_groups_and_all_nan_get_zero() -> None:
    # verl's GRPO gives a lone response r / (1 + eps) (baseline 0, std 1); flexent gives 0 (the
    # formula's own value: the baseline of one reward is that reward), as TRL with one generation.
    r = torch.tensor([3.0, NAN, NAN, 1.0, 0.0])
    for fn in (grpo, qae):
        close(fn(r, torch.tensor([0, 1, 1, 2, 2]))[:3], [0.0, 0.0, 0.0])
        assert fn(torch.tensor([]), 2).numel() == 0
        # equal rewards: exactly 0 even with eps 0 (no 0 / 0) and a mean that rounds
        same = torch.tensor([0.1] * 7 + [NAN])
        assert fn(same, 8, eps=0.0).eq(0).all() and fn(same, 8, scale=False).eq(0).all()


@pytest.mark.parametrize(
    ("rewards", "groups", "match"),
    [
        (torch.zeros(2, 4), 4, r"1-D tensor \[N\], got \(2, 4\)"),
        ([1.0, 0.0], 2, r"1-D tensor \[N\], got list"),
        (torch.tensor([1.0, math.inf]), 2, "finite"),
        (torch.zeros(6), 4, "group size 4 must be >= 1 and divide the 6 rewards"),
        (torch.zeros(4), 0, "group size 0"),
        (torch.zeros(4), True, "got True"),
        (torch.zeros(4), torch.zeros(4), r"integer tensor of shape \(4,\), got torch.float32"),
        (torch.zeros(4), torch.zeros(3, dtype=torch.long), r"got torch.int64 \(3,\)"),
    ],
)
def test_bad_inputs_name_the_value(rewards, groups, match) -> None:
    for fn in (grpo, qae):
        with pytest.raises(ValueError, match=match):
            fn(rewards, groups)


def test_bad_scale_and_eps() -> None:
    with pytest.raises(ValueError, match="scale must be true or false, got 'group'"):
        grpo(torch.zeros(2), 2, scale="group")
    with pytest.raises(ValueError, match=r"eps must be a float >= 0, got -1"):
        qae(torch.zeros(2), 2, eps=-1)


# ---------------------------------------------------------------- verl


def verl_batch(scores: list[float], uids: list[str], length: list[int], width: int = 5):
    """token_level_rewards with each score on the response's last token, and its mask."""
    n = len(scores)
    mask = torch.zeros(n, width)
    rewards = torch.zeros(n, width)
    for i, (s, t) in enumerate(zip(scores, length, strict=True)):
        mask[i, :t] = 1.0
        rewards[i, t - 1] = s
    return rewards, mask, np.array(uids, dtype=object)


SCORES = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.5, 2.0, 1.0, 1.0]
UIDS = ["a", "b", "a", "c", "b", "a", "b", "c", "c", "b", "c", "a"]
LENGTHS = [5, 3, 1, 2, 4, 5, 2, 3, 1, 4, 5, 2]


def test_verl_registration_hand_values() -> None:
    pytest.importorskip("verl")
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, get_adv_estimator_fn

    from flexent.integrations.verl import advantage

    fn = get_adv_estimator_fn("flexent_qae")
    assert fn is advantage.compute_qae_outcome_advantage
    assert ADV_ESTIMATOR_REGISTRY["flexent_qae"] is fn
    # uid a: 1, 0, 0, 1 (rows 0, 2, 5, 11); uid b: 0, 0, 0, 2 (rows 1, 4, 6, 9);
    # uid c: 1, 1, 0.5, 1 (rows 3, 7, 8, 10). K = 0.4, position 1.2:
    #   a sorted 0,0,1,1: Q = 0.2; std sqrt(1/3) -> 0.8 sqrt3, -0.2 sqrt3
    #   b sorted 0,0,0,2: Q = 0;   mean 0.5, var (0.25 * 3 + 2.25) / 3 = 1, std 1 -> 0, 0, 0, 2
    #   c sorted .5,1,1,1: Q = 1;  mean 0.875, var (3 * 0.015625 + 0.140625) / 3 = 0.0625,
    #     std 0.25 -> 0, 0, -0.5 / 0.25 = -2, 0
    rewards, mask, uids = verl_batch(SCORES, UIDS, LENGTHS)
    row = {0: 0.8 * S3, 2: -0.2 * S3, 5: -0.2 * S3, 11: 0.8 * S3, 9: 2.0, 8: -2.0}
    want = torch.tensor([row.get(i, 0.0) for i in range(12)])
    config = OmegaConf.create({"adv_estimator": "flexent_qae", "quantile_k": 0.4})
    adv, ret = fn(token_level_rewards=rewards, response_mask=mask, index=uids, config=config)
    assert adv is ret
    torch.testing.assert_close(adv, want.unsqueeze(-1) * mask, atol=1e-5, rtol=0)
    # no config: K 0.4 and std scaling are the defaults; epsilon = verl's 1e-6
    torch.testing.assert_close(fn(rewards, mask, uids)[0], adv)
    # norm_adv_by_std_in_grpo=false: r - Q only: a 0.8 / -0.2, b 2 on row 9, c -0.5 on row 8
    unscaled = {0: 0.8, 2: -0.2, 5: -0.2, 11: 0.8, 9: 2.0, 8: -0.5}
    cfg = OmegaConf.create({"quantile_k": 0.4, "norm_adv_by_std_in_grpo": False})
    want = torch.tensor([unscaled.get(i, 0.0) for i in range(12)]).unsqueeze(-1) * mask
    torch.testing.assert_close(fn(rewards, mask, uids, config=cfg)[0], want, atol=1e-6, rtol=0)


def test_verl_config_errors_name_the_key() -> None:
    pytest.importorskip("verl")
    from omegaconf import OmegaConf

    from flexent.integrations.verl.advantage import compute_qae_outcome_advantage as fn

    rewards, mask, uids = verl_batch(SCORES, UIDS, LENGTHS)
    with pytest.raises(ValueError, match=r"algorithm.quantile_k=1.5 .*k must lie in \(0, 1\)"):
        fn(rewards, mask, uids, config=OmegaConf.create({"quantile_k": 1.5}))
    bad = OmegaConf.create({"quantile_interpolation": "spline"})
    with pytest.raises(ValueError, match=r"quantile_interpolation='spline' .*interpolation must"):
        fn(rewards, mask, uids, config=bad)
    with pytest.raises(ValueError, match=r"flexent_qae needs the batch's prompt ids"):
        fn(rewards, mask, None)


@pytest.mark.parametrize("k", [0.25, 0.4, 0.6])
@pytest.mark.parametrize("norm", [True, False])
def test_verl_parity_with_the_authors_change(v, monkeypatch, k, norm) -> None:
    """The QAE authors' code is verl's compute_grpo_outcome_advantage with
    ``id2mean[idx] = torch.quantile(scores_tensor, quantile_k)``: run verl's own function with
    its ``torch.mean`` (called only there) swapped for that quantile, and compare."""
    from flexent.integrations.verl.advantage import compute_qae_outcome_advantage

    rewards, mask, uids = verl_batch(SCORES, UIDS, LENGTHS)
    config = {"quantile_k": k, "norm_adv_by_std_in_grpo": norm}
    ours = compute_qae_outcome_advantage(rewards, mask, uids, config=config)[0]
    grpo_ref = v.core_algos.compute_grpo_outcome_advantage
    with monkeypatch.context() as m:
        m.setattr(torch, "mean", lambda t, *a, **kw: torch.quantile(t, k))
        ref = grpo_ref(rewards.clone(), mask, uids, norm_adv_by_std_in_grpo=norm)[0]
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    # and flexent's grpo is verl's grpo (same groups of >= 2, same eps 1e-6)
    scores = rewards.sum(-1)
    from flexent.integrations.verl.advantage import group_ids

    mine = grpo(scores, group_ids(uids), scale=norm).unsqueeze(-1) * mask
    theirs = grpo_ref(rewards.clone(), mask, uids, norm_adv_by_std_in_grpo=norm)[0]
    torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-6)


def test_verl_compute_advantage_reads_the_hydra_section(v) -> None:
    """Through verl's own ``compute_advantage`` with its real Hydra config: the estimator is
    looked up by name and K comes from ``+algorithm.quantile_k``."""
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from flexent.integrations.verl.advantage import compute_qae_outcome_advantage

    cfg = v.compose(["algorithm.adv_estimator=flexent_qae", "+algorithm.quantile_k=0.6"])
    rewards, mask, uids = verl_batch(SCORES, UIDS, LENGTHS)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": uids},
    )
    out = compute_advantage(data, adv_estimator=cfg.algorithm.adv_estimator, config=cfg.algorithm)
    want = compute_qae_outcome_advantage(rewards, mask, uids, config={"quantile_k": 0.6})[0]
    torch.testing.assert_close(out.batch["advantages"], want)
    # K = 0.6 differs from the default 0.4 on uid a ([0,0,1,1]: position 1.8 -> Q 0.8)
    default = compute_qae_outcome_advantage(rewards, mask, uids)[0]
    assert not torch.allclose(want, default)


# ---------------------------------------------------------------- TRL


def trl_trainer(*, process_index: int, training: bool = True, scale: str = "group", **kw):
    return NS(
        model=NS(training=training),
        num_generations=kw.get("num_generations", 4),
        num_generations_eval=kw.get("num_generations_eval", 2),
        scale_rewards=scale,
        multi_objective_aggregation=kw.get("aggregation", "sum_then_normalize"),
        reward_weights=kw.get("weights", torch.tensor([1.0, 0.5])),
        accelerator=NS(process_index=process_index),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _logs={"advantages": deque(kw.get("logged", []), maxlen=kw.get("maxlen", 16))},
    )


def trl_out(n_local: int) -> dict:
    """The keys _generate_and_score_completions returns (values irrelevant here but the
    advantages' shape and dtype)."""
    return {
        "prompt_ids": torch.zeros(n_local, 3, dtype=torch.long),
        "prompt_mask": torch.ones(n_local, 3, dtype=torch.long),
        "completion_ids": torch.zeros(n_local, 4, dtype=torch.long),
        "completion_mask": torch.ones(n_local, 4, dtype=torch.long),
        "advantages": torch.full((n_local,), 9.0),
        "num_items_in_batch": torch.tensor(4 * n_local),
    }


# Two reward functions with weights 1 and 0.5, two processes x 4 completions, G = 4:
# group 1 (process 0): weighted sums 1, 0, 0, 0 (the second function 0 or None = NaN)
# group 2 (process 1): 1 + 0.5 * 0 = 1, 0.5 * 2 = 1, 0, unscorable (both None -> NaN)
PER_FUNC = torch.tensor(
    [[1.0, 0.0], [0.0, NAN], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [NAN, 2.0], [0.0, 0.0], [NAN, NAN]]
)


def test_trl_recompute_qae_hand_values_on_each_process() -> None:
    pytest.importorskip("trl")
    from flexent.integrations.trl.advantages import recompute_advantages

    # group 1 [1, 0, 0, 0]: Q_0.4 = 0, std 0.5 -> 1 / (0.5 + 1e-4) = 1.999600, 0, 0, 0
    # group 2 scorable [1, 1, 0] (3 of 4): position 0.8 between 0 and 1 -> Q = 0.8;
    #   mean 2/3, var ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3, std 0.577350:
    #   0.2 / 0.577450 = 0.346351 (x2), -0.8 / 0.577450 = -1.385402, the unscorable 0
    spec = {"name": "qae", "params": {"k": 0.4}}
    d = 1 / S3 + 1e-4
    want = [1 / 0.5001, 0.0, 0.0, 0.0, 0.2 / d, 0.2 / d, -0.8 / d, 0.0]
    for process in (0, 1):
        trainer = trl_trainer(process_index=process, logged=[5.0] * 12 + [9.0] * 8)
        out = recompute_advantages(trainer, trl_out(4), PER_FUNC, spec)
        close(out["advantages"], want[4 * process : 4 * process + 4], atol=1e-5)
        # the completions table: TRL's 8 values of this batch replaced, the older 8 kept
        assert list(trainer._logs["advantages"])[:8] == [5.0] * 8
        close(torch.tensor(list(trainer._logs["advantages"])[8:]), want, atol=1e-5)
        assert trainer._metrics["train"]["advantage/frac_zero"] == [pytest.approx(4 / 8)]


def test_trl_recompute_grpo_matches_trls_own_formula() -> None:
    """grpo through the recompute = TRL 1.16's sum_then_normalize lines (nanmean, TRL's nanstd,
    + 1e-4, nan_to_num), written out here from grpo_trainer.py."""
    pytest.importorskip("trl")
    from trl.trainer.utils import nanstd

    from flexent.integrations.trl.advantages import recompute_advantages

    w = torch.tensor([1.0, 0.5])
    rewards = (PER_FUNC * w).nansum(dim=1)
    rewards[torch.isnan(PER_FUNC).all(dim=1)] = NAN
    mean = torch.nanmean(rewards.view(-1, 4), dim=1).repeat_interleave(4)
    std = nanstd(rewards.view(-1, 4), dim=1).repeat_interleave(4)
    for scale in ("group", "none"):
        trl_adv = rewards - mean
        if scale != "none":
            trl_adv = trl_adv / (std + 1e-4)
        trl_adv = torch.nan_to_num(trl_adv, nan=0.0)
        trainer = trl_trainer(process_index=1, scale=scale)
        out = recompute_advantages(trainer, trl_out(4), PER_FUNC, {"name": "grpo"})
        torch.testing.assert_close(out["advantages"], trl_adv[4:], atol=1e-6, rtol=1e-6)


def test_trl_recompute_eval_groups_and_noop() -> None:
    pytest.importorskip("trl")
    from flexent.integrations.trl.advantages import recompute_advantages

    # eval: groups of num_generations_eval = 2, one process: [1, 0] [0, 0] -> K 0.4: Q 0.4,
    # std sqrt(0.5) = 0.707107: 0.6 / 0.707207 = 0.848406, -0.4 / 0.707207 = -0.565604; [0, 0] 0
    trainer = trl_trainer(process_index=0, training=False)
    per_func = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    out = recompute_advantages(trainer, trl_out(4), per_func, {"name": "qae", "params": {}})
    d = math.sqrt(0.5) + 1e-4
    close(out["advantages"], [0.6 / d, -0.4 / d, 0.0, 0.0], atol=1e-5)
    assert trainer._metrics["eval"]["advantage/frac_zero"] == [0.5]
    # {} = TRL's own advantages: untouched
    out = trl_out(4)
    assert recompute_advantages(trainer, out, per_func, {})["advantages"].eq(9.0).all()


def test_trl_refusals() -> None:
    pytest.importorskip("trl")
    from flexent.integrations.trl.advantages import check_trl_advantage_args, recompute_advantages

    qae_spec = {"name": "qae", "params": {}}
    with pytest.raises(ValueError, match=r"trainer.scale_rewards='batch'.*'group' or 'none'"):
        recompute_advantages(
            trl_trainer(process_index=0, scale="batch"), trl_out(4), PER_FUNC, qae_spec
        )
    bad = trl_trainer(process_index=0, aggregation="normalize_then_sum")
    with pytest.raises(ValueError, match="multi_objective_aggregation='normalize_then_sum'"):
        recompute_advantages(bad, trl_out(4), PER_FUNC, qae_spec)
    with pytest.raises(ValueError, match="fewer than process 2's slice of 4"):
        recompute_advantages(trl_trainer(process_index=2), trl_out(4), PER_FUNC, qae_spec)
    # GRPOConfig's bool form of scale_rewards: True = "group", False = "none"
    check_trl_advantage_args(
        NS(scale_rewards=True, multi_objective_aggregation="sum_then_normalize"), qae_spec
    )
    check_trl_advantage_args(NS(scale_rewards="batch"), {})  # TRL's own advantages: anything goes

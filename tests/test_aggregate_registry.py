"""aggregate, entropy_bonus, the loss registry and compute_policy_loss."""

from __future__ import annotations

import math

import pytest
import torch

import flexent.losses.registry as registry
from flexent.losses import (
    aggregate,
    compute_policy_loss,
    entropy_bonus,
    get_policy_loss,
    list_policy_losses,
    ppo_clip,
    register_policy_loss,
)

MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]

LOSS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, math.nan, math.inf], [7.0, 8.0, 9.0, 10.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # valid tokens 1, 2, 3, 4, 5, 6 (NaN/inf and the empty third row are masked)
        ("token-mean", 21 / 6),  # 21 / 6 tokens = 3.5
        ("seq-mean-token-mean", (10 / 4 + 11 / 2) / 2),  # (2.5 + 5.5) / 2 non-empty rows = 4.0
        ("seq-mean-token-sum", (10 + 11) / 2),  # 10.5
        ("seq-mean-token-sum-norm", (10 + 11) / 2 / 4),  # / T = 4 -> 2.625
    ],
)
def test_aggregate_hand_values(mode: str, expected: float) -> None:
    assert float(aggregate(LOSS, MASK, mode)) == pytest.approx(expected)


def test_aggregate_norm_const_and_gradient_weights() -> None:
    # seq-mean-token-sum-norm with norm_const 100: 10.5 / 100
    assert float(aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_const=100)) == pytest.approx(
        0.105
    )
    # gradient of token-mean: 1/6 on each valid token, exactly 0 on masked ones (even NaN/inf)
    x = LOSS.clone().requires_grad_(True)
    aggregate(x, MASK).backward()
    expected = torch.where(MASK, torch.full_like(LOSS, 1 / 6), torch.zeros_like(LOSS))
    torch.testing.assert_close(x.grad, expected)
    # seq-mean-token-mean: 1 / (n_i * 2 sequences) -> row 0: 1/8, row 1: 1/4
    x.grad = None
    aggregate(x, MASK, "seq-mean-token-mean").backward()
    assert x.grad[0, 0] == pytest.approx(1 / 8) and x.grad[1, 1] == pytest.approx(1 / 4)


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_all_masked_is_zero(mode: str) -> None:
    x = torch.full((2, 3), math.nan, requires_grad=True)
    out = aggregate(x, torch.zeros(2, 3), mode)
    assert float(out.detach()) == 0.0
    out.backward()
    assert torch.equal(x.grad, torch.zeros(2, 3))


def test_aggregate_errors() -> None:
    with pytest.raises(
        ValueError,
        match="unknown aggregation mode 'mean'; valid modes: token-mean, seq-mean-token-mean",
    ):
        aggregate(LOSS, MASK, "mean")
    with pytest.raises(ValueError, match="norm_const must be a positive finite float, got 0"):
        aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_const=0)
    with pytest.raises(ValueError, match="must both be"):
        aggregate(LOSS, MASK[:, :2])


def test_entropy_bonus_subtracts_coef_times_entropy() -> None:
    # token-mean of (loss - 0.01 H): loss mean 3.5 - 0.01 * mean H; d/dH = -0.01 / 6 on valid tokens
    entropy = torch.arange(12.0).view(3, 4).requires_grad_(True)
    total = aggregate(entropy_bonus(LOSS, entropy, 0.01), MASK)
    # valid entropies 0, 1, 2, 3, 4, 5 -> mean 2.5
    assert float(total.detach()) == pytest.approx(3.5 - 0.01 * 2.5)
    total.backward()
    assert entropy.grad[0, 0] == pytest.approx(-0.01 / 6) and entropy.grad[2, 0] == 0
    with pytest.raises(ValueError, match="entropy coef must be a finite float"):
        entropy_bonus(LOSS, entropy, math.nan)


def test_registry_lists_the_shipped_losses() -> None:
    assert set(list_policy_losses()) >= {
        "ppo_clip",
        "ce_gppo",
        "clip_cov",
        "kl_cov",
        "gspo",
        "sapo",
    }
    assert list_policy_losses() == sorted(list_policy_losses())
    assert get_policy_loss("ppo_clip") is ppo_clip


def test_unknown_loss_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        get_policy_loss("ppo")
    msg = str(info.value)
    assert "unknown policy loss 'ppo'" in msg
    for name in ("ce_gppo", "clip_cov", "gspo", "kl_cov", "ppo_clip", "sapo"):
        assert name in msg


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="'ppo_clip' is already registered"):
        register_policy_loss("ppo_clip")(lambda *a, **k: None)
    name = "test_dummy_loss"
    try:
        register_policy_loss(name)(ppo_clip)
        assert get_policy_loss(name) is ppo_clip
        with pytest.raises(ValueError, match=f"'{name}' is already registered"):
            register_policy_loss(name)(ppo_clip)
    finally:
        registry._REGISTRY.pop(name, None)
    assert name not in list_policy_losses()


def test_compute_policy_loss_aggregates_and_checks_params() -> None:
    # r = 1.5, 1.0, 0.5 with A = 1, eps_high 0.28: per-token -1.28, -1.0, -0.5; token-mean -0.92667
    lp = torch.tensor([[1.5, 1.0, 0.5]]).log()
    loss, metrics = compute_policy_loss(
        "ppo_clip",
        lp,
        torch.zeros(1, 3),
        torch.tensor([1.0]),
        torch.ones(1, 3),
        eps_low=0.2,
        eps_high=0.28,
    )
    assert float(loss) == pytest.approx(-2.78 / 3)
    assert float(metrics["policy/loss"]) == pytest.approx(-2.78 / 3)
    # eps left as None -> the loss's defaults (0.2 for ppo_clip): -1.2 instead of -1.28
    loss, metrics = compute_policy_loss(
        "ppo_clip",
        lp,
        torch.zeros(1, 3),
        torch.tensor([1.0]),
        torch.ones(1, 3),
        agg_mode="seq-mean-token-sum",
    )
    assert float(loss) == pytest.approx(-2.7)
    assert float(metrics["clip/eps_high_mean"]) == pytest.approx(0.2)
    # with the entropy bonus: -2.7 / 3 - 0.1 * mean([1, 2, 3]) = -0.9 - 0.2
    loss, _ = compute_policy_loss(
        "ppo_clip",
        lp,
        torch.zeros(1, 3),
        torch.tensor([1.0]),
        torch.ones(1, 3),
        entropy=torch.tensor([[1.0, 2.0, 3.0]]),
        entropy_coef=0.1,
    )
    assert float(loss) == pytest.approx(-1.1)
    with pytest.raises(ValueError, match=r"'ppo_clip' got unknown parameters \['tau_pos'\]"):
        compute_policy_loss(
            "ppo_clip", lp, torch.zeros(1, 3), torch.tensor([1.0]), torch.ones(1, 3), tau_pos=1.0
        )

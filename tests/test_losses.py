"""ppo_clip and the properties every loss shares: hand-derived values, gradients, masking,
numerical safety, and equivalence with straight-line implementations written here."""

from __future__ import annotations

import math

import pytest
import torch

from flexent.losses import get_policy_loss, list_policy_losses, ppo_clip
from flexent.thresholds import DynamicThresholds
from loss_support import supplied_params

COMMON_KEYS = {
    "clip/frac_high",
    "clip/frac_low",
    "clip/frac",
    "clip/eps_high_mean",
    "clip/eps_low_mean",
    "policy/ratio_mean",
    "policy/approx_kl",
}


def three_token_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two sequences, ratios r = 0.5, 1.0, 1.5 each; A = +2 and -1 (old log-probs log 0.4)."""
    old = torch.full((2, 3), math.log(0.4))
    logprobs = (old + torch.tensor([0.5, 1.0, 1.5]).log()).requires_grad_(True)
    return logprobs, old, torch.tensor([2.0, -1.0]), torch.ones(2, 3, dtype=torch.bool)


def test_ppo_clip_hand_values_both_signs_both_sides() -> None:
    logprobs, old, adv, mask = three_token_batch()
    out = ppo_clip(logprobs, old, adv, mask, eps_low=0.2, eps_high=0.28)
    # loss = max(-A r, -A clip(r, 0.8, 1.28)).
    # A = +2: r=0.5 -> max(-1.0, -1.6) = -1.0 (low side does not clip for A > 0)
    #         r=1.0 -> -2.0;  r=1.5 -> max(-3.0, -2.56) = -2.56 (upper clip)
    # A = -1: r=0.5 -> max(0.5, 0.8) = 0.8 (lower clip);  r=1.0 -> 1.0
    #         r=1.5 -> max(1.5, 1.28) = 1.5 (upper side does not clip for A < 0)
    expected = torch.tensor([[-1.0, -2.0, -2.56], [0.8, 1.0, 1.5]])
    torch.testing.assert_close(out.per_token_loss, expected)
    out.per_token_loss.sum().backward()
    # d(-A r)/d logprob = -A r on unclipped tokens, 0 on clipped ones.
    grad = torch.tensor([[-1.0, -2.0, 0.0], [0.0, 1.0, 1.5]])
    torch.testing.assert_close(logprobs.grad, grad)
    m = out.metrics
    assert set(m) >= COMMON_KEYS
    assert all(v.dim() == 0 for v in m.values())
    # one high clip (A>0, r=1.5) and one low clip (A<0, r=0.5) out of 6 tokens
    assert float(m["clip/frac_high"]) == pytest.approx(1 / 6)
    assert float(m["clip/frac_low"]) == pytest.approx(1 / 6)
    assert float(m["clip/frac"]) == pytest.approx(2 / 6)
    assert float(m["clip/eps_high_mean"]) == pytest.approx(0.28)
    assert float(m["clip/eps_low_mean"]) == pytest.approx(0.2)
    assert float(m["policy/ratio_mean"]) == pytest.approx(1.0)
    # k3 = r - 1 - ln r: r=.5 -> 0.193147, r=1 -> 0, r=1.5 -> 0.094535; mean of 2 x each = 0.095894
    assert float(m["policy/approx_kl"]) == pytest.approx(
        (0.5 - 1 - math.log(0.5) + 0.5 - math.log(1.5)) / 3
    )


def test_ppo_clip_grpo_default_is_symmetric_0_2() -> None:
    logprobs, old, adv, mask = three_token_batch()
    out = ppo_clip(logprobs, old, adv, mask)
    # eps 0.2 both sides: A=+2, r=1.5 -> -2 * 1.2 = -2.4; A=-1, r=0.5 -> 0.8
    torch.testing.assert_close(
        out.per_token_loss, torch.tensor([[-1.0, -2.0, -2.4], [0.8, 1.0, 1.5]])
    )


def test_dual_clip_caps_negative_advantage_loss() -> None:
    # A = -1, r = 2 and 4, clip_c = 3: r=2 -> max(2, 1.2) = 2 (gradient -A r = 2);
    # r=4 -> min(4, 3) = 3 (dual clip, no gradient).
    old = torch.zeros(1, 2)
    logprobs = torch.tensor([[2.0, 4.0]]).log().requires_grad_(True)
    out = ppo_clip(logprobs, old, torch.tensor([-1.0]), torch.ones(1, 2), clip_c=3.0)
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[2.0, 3.0]]))
    out.per_token_loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[2.0, 0.0]]))
    assert float(out.metrics["clip/frac_dual"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="clip_c must be a finite float > 1"):
        ppo_clip(logprobs, old, torch.tensor([-1.0]), torch.ones(1, 2), clip_c=0.5)


def test_per_token_eps_tensors() -> None:
    # eps_high differs per token: 0.6 lets r = 1.5 through, 0.1 clips r = 1.2 (A = 1):
    # token 0: r=1.5 < 1.6 -> -1.5;  token 1: r=1.2 > 1.1 -> -1.1
    old = torch.zeros(1, 2)
    logprobs = torch.tensor([[1.5, 1.2]]).log()
    out = ppo_clip(
        logprobs, old, torch.tensor([1.0]), torch.ones(1, 2), eps_high=torch.tensor([[0.6, 0.1]])
    )
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[-1.5, -1.1]]))
    assert float(out.metrics["clip/eps_high_mean"]) == pytest.approx(0.35)


def reference_ppo(lp, old, adv, mask, eps_low, eps_high):
    """Straight-line PPO clip over Python floats: returns per-token loss and d loss / d logprob."""
    B, T = len(lp), len(lp[0])
    loss = [[0.0] * T for _ in range(B)]
    grad = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if not mask[b][t]:
                continue
            a = adv[b][t]
            el = eps_low[b][t] if isinstance(eps_low, list) else eps_low
            eh = eps_high[b][t] if isinstance(eps_high, list) else eps_high
            r = math.exp(lp[b][t] - old[b][t])
            unclipped, clipped = -a * r, -a * min(max(r, 1 - el), 1 + eh)
            loss[b][t] = max(unclipped, clipped)
            grad[b][t] = -a * r if unclipped >= clipped else 0.0
    return torch.tensor(loss), torch.tensor(grad)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (8, 33)])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_token_eps", [False, True])
def test_ppo_clip_matches_straight_line_reference(shape, seed, per_token_eps) -> None:
    g = torch.Generator().manual_seed(seed)
    B, T = shape
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 4
    logprobs = (old + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_(
        True
    )
    adv_seq = torch.randn(B, generator=g, dtype=torch.float64)
    adv = (
        adv_seq
        if seed % 2 == 0
        else adv_seq[:, None] + 0.1 * torch.randn(B, T, generator=g, dtype=torch.float64)
    )
    mask = torch.rand(B, T, generator=g) > 0.25
    if per_token_eps:
        eps_low, eps_high = DynamicThresholds()(old, w_up=1.0, w_low=1.0)
        ref_el, ref_eh = eps_low.tolist(), eps_high.tolist()
    else:
        eps_low, eps_high = ref_el, ref_eh = 0.2, 0.28
    out = ppo_clip(logprobs, old, adv, mask, eps_low=eps_low, eps_high=eps_high)
    out.per_token_loss.sum().backward()
    adv_bt = adv.expand(B, T) if adv.dim() == 2 else adv[:, None].expand(B, T)
    ref_loss, ref_grad = reference_ppo(
        logprobs.tolist(), old.tolist(), adv_bt.tolist(), mask.tolist(), ref_el, ref_eh
    )
    torch.testing.assert_close(out.per_token_loss, ref_loss.to(torch.float64))
    torch.testing.assert_close(logprobs.grad, ref_grad.to(torch.float64))


@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_clip_equals_trl_dapo_per_token_loss_exactly(seed: int) -> None:
    # TRL 1.16 GRPOTrainer._compute_loss, loss_type="dapo", token level:
    #   coef_1 = exp(logp - old); coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high)
    #   per_token_loss = -min(coef_1 * A, coef_2 * A)
    # and its clip metrics: low = (coef_1 < 1 - eps_low) & (A < 0), high = (coef_1 > 1 + eps_high) & (A > 0).
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(16, 64, generator=g) * 3
    logprobs = old + 0.3 * torch.randn(16, 64, generator=g)
    adv = torch.randn(16, 1, generator=g)
    mask = torch.ones(16, 64, dtype=torch.bool)
    coef_1 = torch.exp(logprobs - old)
    coef_2 = torch.clamp(coef_1, 1 - 0.2, 1 + 0.28)
    trl = -torch.min(coef_1 * adv, coef_2 * adv)
    out = ppo_clip(logprobs, old, adv[:, 0], mask, eps_low=0.2, eps_high=0.28)
    assert torch.equal(out.per_token_loss, trl)
    low = ((coef_1 < 1 - 0.2) & (adv < 0)).float().mean()
    high = ((coef_1 > 1 + 0.28) & (adv > 0)).float().mean()
    assert torch.equal(out.metrics["clip/frac_low"], low)
    assert torch.equal(out.metrics["clip/frac_high"], high)
    # verl's compute_policy_loss_vanilla: pg_clipfrac = mean(pg_losses2 > pg_losses1) == clip/frac
    pg1, pg2 = -adv * coef_1, -adv * coef_2
    torch.testing.assert_close(out.metrics["clip/frac"], (pg2 > pg1).float().mean())


@pytest.mark.parametrize("name", list_policy_losses())
def test_masked_tokens_zero_loss_and_gradient_even_with_garbage(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    old = -torch.rand(3, 6, generator=g) * 2
    logprobs = (old + 0.3 * torch.randn(3, 6, generator=g)).detach()
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, :] = False
    logprobs[0, 4], old[0, 5], logprobs[2, 0] = math.nan, -math.inf, math.inf
    adv = torch.randn(3, 6, generator=g)
    adv[2, 1] = math.nan
    logprobs.requires_grad_(True)
    fn = get_policy_loss(name)
    out = fn(logprobs, old, adv, mask, **supplied_params(name, old))
    assert torch.isfinite(out.per_token_loss).all()
    assert (out.per_token_loss[~mask] == 0).all()
    out.per_token_loss.sum().backward()
    assert torch.isfinite(logprobs.grad).all()
    assert (logprobs.grad[~mask] == 0).all()
    assert (logprobs.grad[mask] != 0).any()
    assert all(torch.isfinite(v) for v in out.metrics.values())


@pytest.mark.parametrize("name", list_policy_losses())
def test_all_masked_batch_gives_zero_not_nan(name: str) -> None:
    logprobs = torch.full((2, 4), -1.0, requires_grad=True)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    out = get_policy_loss(name)(
        logprobs, torch.zeros(2, 4), torch.ones(2), mask, **supplied_params(name, mask)
    )
    assert torch.equal(out.per_token_loss, torch.zeros(2, 4))
    out.per_token_loss.sum().backward()
    assert torch.equal(logprobs.grad, torch.zeros(2, 4))
    assert set(out.metrics) >= COMMON_KEYS
    assert all(float(v) == 0.0 for v in out.metrics.values())


@pytest.mark.parametrize("name", list_policy_losses())
def test_extreme_log_ratios_stay_finite(name: str) -> None:
    # log r = +-1000 would overflow exp; the clamp to [-20, 20] keeps loss and gradient finite.
    old = torch.tensor([[-1000.0, 0.0, -0.5]])
    logprobs = torch.tensor([[0.0, -1000.0, -0.5]], requires_grad=True)
    for adv in (torch.tensor([1.0e3]), torch.tensor([-1.0e3])):
        out = get_policy_loss(name)(
            logprobs, old, adv, torch.ones(1, 3), **supplied_params(name, old)
        )
        (grad,) = torch.autograd.grad(out.per_token_loss.sum(), logprobs)
        assert torch.isfinite(out.per_token_loss).all() and torch.isfinite(grad).all()
        assert all(torch.isfinite(v) for v in out.metrics.values())


def test_every_registered_loss_returns_common_metrics_as_0dim_tensors() -> None:
    g = torch.Generator().manual_seed(5)
    old = -torch.rand(4, 8, generator=g)
    logprobs = old + 0.2 * torch.randn(4, 8, generator=g)
    for name in list_policy_losses():
        out = get_policy_loss(name)(
            logprobs,
            old,
            torch.randn(4, generator=g),
            torch.ones(4, 8),
            **supplied_params(name, old),
        )
        assert set(out.metrics) >= COMMON_KEYS, name
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.metrics.values()), name
        assert out.per_token_loss.shape == (4, 8)


def test_bf16_inputs_give_float32_loss() -> None:
    old = torch.full((2, 3), -0.7, dtype=torch.bfloat16)
    out = ppo_clip(old + 0.1, old, torch.ones(2, dtype=torch.bfloat16), torch.ones(2, 3))
    assert out.per_token_loss.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"old_logprobs": torch.zeros(2, 4)}, "old_logprobs shape (2, 4) != logprobs shape (2, 3)"),
        ({"mask": torch.ones(3, 3)}, "mask shape (3, 3)"),
        ({"advantages": torch.ones(3)}, "advantages must be [B] or [B, T]"),
        ({"eps_low": 1.0}, "eps_low must lie in [0, 1), got 1.0"),
        ({"eps_high": -0.1}, "eps_high must lie in [0, inf), got -0.1"),
        ({"eps_high": math.nan}, "eps_high must be a finite float or a tensor, got nan"),
        ({"eps_high": torch.ones(4)}, "eps_high of shape (4,) does not broadcast to (2, 3)"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs, needle) -> None:
    args = {
        "logprobs": torch.zeros(2, 3),
        "old_logprobs": torch.zeros(2, 3),
        "advantages": torch.ones(2),
        "mask": torch.ones(2, 3),
    }
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        ppo_clip(**args)
    assert needle in str(info.value)

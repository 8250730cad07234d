"""CE-GPPO, Clip-Cov, KL-Cov, GSPO and SAPO: hand-derived values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from flexent.losses import aggregate, ce_gppo, clip_cov, gspo, kl_cov, sapo


def grad_of(fn, logprobs: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    lp = logprobs.detach().clone().requires_grad_(True)
    out = fn(lp, *args, **kwargs)
    (g,) = torch.autograd.grad(out.per_token_loss.sum(), lp)
    return out.per_token_loss.detach(), g


# ---------------------------------------------------------------- CE-GPPO


def test_ce_gppo_out_of_band_gradient_is_bounded() -> None:
    # eps 0.2/0.2, beta1 0.75, beta2 1.0; old log-probs 0 so r = exp(logprob).
    # token: A, r           region              value = d/dlogprob
    #  0:  -2, 0.5   A<0, r<0.8 (low out)   -beta1 (1-0.2) A = -0.75*0.8*(-2) = 1.2
    #  1:  +2, 1.5   A>0, r>1.2 (high out)  -beta2 (1+0.2) A = -1.2*2 = -2.4
    #  2:  +2, 1.1   in band                -r A = -2.2
    #  3:  -2, 1.5   A<0, r>1.2: PPO does not clip this side -> -r A = 3.0
    #  4:  +2, 0.5   A>0, r<0.8: not clipped either          -> -r A = -1.0
    r = torch.tensor([[0.5, 1.5, 1.1, 1.5, 0.5]])
    adv = torch.tensor([[-2.0, 2.0, 2.0, -2.0, 2.0]])
    loss, g = grad_of(ce_gppo, r.log(), torch.zeros(1, 5), adv, torch.ones(1, 5))
    torch.testing.assert_close(loss, torch.tensor([[1.2, -2.4, -2.2, 3.0, -1.0]]))
    torch.testing.assert_close(g, torch.tensor([[1.2, -2.4, -2.2, 3.0, -1.0]]))


def test_ce_gppo_beta_zero_is_ppo_gradient() -> None:
    # beta = 0 removes the out-of-band gradient, like PPO's clip (tokens 0 and 1 above).
    r = torch.tensor([[0.5, 1.5, 1.1]])
    adv = torch.tensor([[-2.0, 2.0, 2.0]])
    _, g = grad_of(ce_gppo, r.log(), torch.zeros(1, 3), adv, torch.ones(1, 3), beta1=0.0, beta2=0.0)
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.0, -2.2]]))
    with pytest.raises(ValueError, match="beta1 must be a float >= 0, got -1"):
        ce_gppo(r.log(), torch.zeros(1, 3), adv, torch.ones(1, 3), beta1=-1)


# ---------------------------------------------------------------- Clip-Cov


def cov_batch() -> tuple[torch.Tensor, torch.Tensor]:
    # A = [2, -2, 2, -2], logp = [-1, -3, -1, -3]: means 0 and -2, centred A = A, centred logp
    # = [1, -1, 1, -1], so cov = [2, 2, 2, 2], all inside (1, 5).
    return torch.tensor([[-1.0, -3.0, -1.0, -3.0]]), torch.tensor([[2.0, -2.0, 2.0, -2.0]])


def test_clip_cov_detaches_the_requested_count_reproducibly() -> None:
    logprobs, adv = cov_batch()
    # r = 1 everywhere (old = current): nothing PPO-clipped; ratio 0.5 of 4 tokens -> 2 detached.
    kwargs = {"clip_cov_ratio": 0.5}
    loss, g1 = grad_of(
        clip_cov,
        logprobs,
        logprobs,
        adv,
        torch.ones(1, 4),
        generator=torch.Generator().manual_seed(7),
        **kwargs,
    )
    _, g2 = grad_of(
        clip_cov,
        logprobs,
        logprobs,
        adv,
        torch.ones(1, 4),
        generator=torch.Generator().manual_seed(7),
        **kwargs,
    )
    # value is untouched (-A r = -A), gradient -A r on kept tokens, 0 on the 2 detached ones
    torch.testing.assert_close(loss, -adv)
    assert int((g1 == 0).sum()) == 2
    kept = g1 != 0
    torch.testing.assert_close(g1[kept], -adv[kept])
    assert torch.equal(g1, g2)
    # the default ratio 2e-4 still detaches max(1, floor(4 * 2e-4)) = 1 token
    out = clip_cov(
        logprobs.clone().requires_grad_(True),
        logprobs,
        adv,
        torch.ones(1, 4),
        generator=torch.Generator().manual_seed(0),
    )
    assert float(out.metrics["clip_cov/frac_detached"]) == pytest.approx(0.25)


def test_clip_cov_only_picks_unclipped_tokens_with_cov_in_range() -> None:
    # logp = [-1, -3, -1, -3, -2, -2], A = [2, -2, 2, -2, 2, -2]: means -2 and 0 -> cov = [2, 2, 2, 2, 0, 0]
    # Token 0 is PPO-clipped (A > 0, r = 1.5), tokens 4, 5 have cov 0 outside (1, 5).
    # With clip_cov_ratio = 1 every eligible token is detached: exactly tokens 1, 2, 3.
    logprobs = torch.tensor([[-1.0, -3.0, -1.0, -3.0, -2.0, -2.0]])
    adv = torch.tensor([[2.0, -2.0, 2.0, -2.0, 2.0, -2.0]])
    old = logprobs.clone()
    old[0, 0] = -1.0 - math.log(1.5)
    _, g = grad_of(
        clip_cov,
        logprobs,
        old,
        adv,
        torch.ones(1, 6),
        clip_cov_ratio=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.0, 0.0, 0.0, -2.0, 2.0]]))
    with pytest.raises(ValueError, match="generator"):
        clip_cov(logprobs, old, adv, torch.ones(1, 6))


# ---------------------------------------------------------------- KL-Cov


def test_kl_cov_penalises_the_top_cov_tokens() -> None:
    # logp = [-1, -2, -3, -4], A = [1, 1, -1, -1]: means -2.5 and 0 -> centred logp [1.5, .5, -.5, -1.5]
    # cov = [1.5, 0.5, 0.5, 1.5]. kl_cov_ratio 0.5 -> 2 tokens: the two 1.5s (tokens 0 and 3).
    # old = logp - 0.1 -> log r = 0.1, r = e^0.1 = 1.105171.
    # loss = -A r + 1.0 * |log r| on tokens 0, 3:  [-1.105171 + 0.1, -1.105171, 1.105171, 1.105171 + 0.1]
    logprobs = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])[None]
    r = math.exp(0.1)
    loss, g = grad_of(kl_cov, logprobs, logprobs - 0.1, adv, torch.ones(1, 4), kl_cov_ratio=0.5)
    torch.testing.assert_close(loss, torch.tensor([[-r + 0.1, -r, r, r + 0.1]]))
    # gradient: -A r + sign(log r) = [-r + 1, -r, r, r + 1]
    torch.testing.assert_close(g, torch.tensor([[-r + 1.0, -r, r, r + 1.0]]))
    out = kl_cov(logprobs, logprobs - 0.1, adv, torch.ones(1, 4), kl_cov_ratio=0.5)
    assert float(out.metrics["kl_cov/frac_penalised"]) == pytest.approx(0.5)


# ---------------------------------------------------------------- GSPO


def test_gspo_sequence_ratio_values_and_token_gradient() -> None:
    # seq 0: log r = [0.1, -0.3] -> s = exp(-0.1) = 0.904837; A = 1: inside [1-3e-4, 1+4e-4]? no,
    #        s < 0.9997 but A > 0 so the low side does not clip -> loss -s each, grad -A s each.
    # seq 1: log r = [0.2, 0.2] -> s = exp(0.2) = 1.221403 > 1.0004, A = 1 -> clipped: -1.0004, grad 0.
    old = torch.full((2, 2), -1.0)
    logprobs = old + torch.tensor([[0.1, -0.3], [0.2, 0.2]])
    loss, g = grad_of(gspo, logprobs, old, torch.tensor([1.0, 1.0]), torch.ones(2, 2))
    s = math.exp(-0.1)
    torch.testing.assert_close(loss, torch.tensor([[-s, -s], [-1.0004, -1.0004]]))
    torch.testing.assert_close(g, torch.tensor([[-s, -s], [0.0, 0.0]]))


def test_gspo_matches_sequence_level_objective() -> None:
    # Independent sequence-level GSPO: J = mean_i -A_i clip(s_i) with s_i = exp(mean_t log r_it)
    # over valid tokens; its autograd gradient must equal that of the token form with
    # seq-mean-token-mean aggregation. Wider eps so that some sequences are inside the band.
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(5, 7, generator=g, dtype=torch.float64)
    delta = 0.05 * torch.randn(5, 7, generator=g, dtype=torch.float64)
    adv = torch.randn(5, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 7, generator=g) > 0.3
    mask[:, 0] = True
    lp_a = (old + delta).requires_grad_(True)
    out = gspo(lp_a, old, adv, mask, eps_low=0.02, eps_high=0.03)
    aggregate(out.per_token_loss, mask, "seq-mean-token-mean").backward()
    lp_b = (old + delta).requires_grad_(True)
    n = mask.sum(-1)
    s = torch.exp(((lp_b - old) * mask).sum(-1) / n)
    unclipped, clipped = -adv * s, -adv * s.clamp(1 - 0.02, 1 + 0.03)
    torch.maximum(unclipped, clipped).mean().backward()
    torch.testing.assert_close(lp_a.grad, lp_b.grad)


# ---------------------------------------------------------------- SAPO


def test_sapo_gate_values_and_slope_at_ratio_one() -> None:
    # r = 1: f = sigmoid(0) * 4 / tau = 2 / tau; A = +1 (tau 1): loss -2; A = -1 (tau 1.05): 2/1.05.
    # f'(r) = tau s(1-s) * 4/tau = 4 s (1-s) = 1 at r = 1, so d loss / d logprob = -A f'(1) r = -A.
    loss, g = grad_of(
        sapo, torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    )
    torch.testing.assert_close(loss, torch.tensor([[-2.0, 2.0 / 1.05]]))
    torch.testing.assert_close(g, torch.tensor([[-1.0, 1.0]]))
    # r = 2, A = 1, tau = 1: f = 4 sigmoid(1) = 2.924234; d/dlogprob = 4 s(1-s) r = 0.786448 * 2
    s = 1 / (1 + math.exp(-1.0))
    loss, g = grad_of(
        sapo,
        torch.tensor([[math.log(2.0)]]),
        torch.zeros(1, 1),
        torch.tensor([1.0]),
        torch.ones(1, 1),
    )
    torch.testing.assert_close(loss, torch.tensor([[-4 * s]]))
    torch.testing.assert_close(g, torch.tensor([[-4 * s * (1 - s) * 2.0]]))


# ---------------------------------------------------------------- finite differences


@pytest.mark.parametrize("name", ["sapo", "ppo_clip", "kl_cov"])
def test_finite_difference_gradient(name: str) -> None:
    # torch.autograd.gradcheck compares the analytic gradient with central finite differences in
    # float64. Log-ratios are kept away from the kinks (the clip bounds, and 0 for |log r|) so the
    # loss is smooth at the evaluation point. (CE-GPPO and GSPO are not checked this way on purpose:
    # their stop-gradient terms make the gradient differ from the derivative of the value.)
    from flexent.losses import get_policy_loss

    g = torch.Generator().manual_seed(4)
    old = -torch.rand(3, 5, generator=g, dtype=torch.float64)
    lr = torch.tensor([-0.5, -0.1, 0.05, 0.1, 0.5], dtype=torch.float64).expand(3, 5)
    logprobs = (old + lr).clone().requires_grad_(True)
    adv = torch.tensor([1.0, -0.7, 0.3], dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 4] = False
    fn = get_policy_loss(name)

    def objective(lp: torch.Tensor) -> torch.Tensor:
        return aggregate(fn(lp, old, adv, mask).per_token_loss, mask)

    assert torch.autograd.gradcheck(objective, (logprobs,), eps=1e-6, atol=1e-6)

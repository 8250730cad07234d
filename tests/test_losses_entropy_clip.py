"""Clip_B, Clip_V (arXiv 2602.03392) and ERC (arXiv 2512.05591): hand-derived values and
gradients, padding with garbage, traits and loss_arguments, and straight-line transcriptions of
the authors' code (hiyuchang/Trinity-RFT at eedef4b: ClipBAdvantageFn, ClipVAdvantageFn,
compute_N_from_logits, Trinity's PPOPolicyLossFn; Kwai-Klear/ERC at f1885c5:
compute_policy_loss_grpo_erc)."""

from __future__ import annotations

import math

import pytest
import torch

from flexent.control import loss_arguments
from flexent.diagnostics import entropy_second_term
from flexent.losses import LossTraits, check_loss_params, loss_traits, user_param_names
from flexent.losses.entropy_clip import clip_b, clip_v, erc

LN2 = math.log(2.0)
NAN, INF = math.nan, math.inf


def grad_of(fn, logprobs: torch.Tensor, *args, **kwargs):
    lp = logprobs.detach().clone().requires_grad_(True)
    out = fn(lp, *args, **kwargs)
    (g,) = torch.autograd.grad(out.per_token_loss.sum(), lp)
    return out.per_token_loss.detach(), g, out.metrics


def with_padding(valid: list[list[float]], pad: float) -> torch.Tensor:
    """Rows ``valid`` plus one padding column, plus one all-padding row, holding ``pad``."""
    rows = [[*row, pad] for row in valid]
    rows.append([pad] * len(rows[0]))
    return torch.tensor(rows, dtype=torch.float64)


def padded_mask(b: int, t: int) -> torch.Tensor:
    mask = torch.zeros(b + 1, t + 1, dtype=torch.bool)
    mask[:b, :t] = True
    return mask


# ---------------------------------------------------------------- traits and arguments


def test_traits_and_user_parameters() -> None:
    assert loss_traits("clip_b") == LossTraits(default_agg="token-mean", needs_old_entropy=True)
    assert loss_traits("clip_v") == LossTraits(
        default_agg="token-mean", needs_old_entropy=True, needs_old_second_term=True
    )
    assert loss_traits("erc") == LossTraits(
        default_agg="token-mean", needs_entropy=True, needs_old_entropy=True
    )
    assert loss_traits("clip_b").adapter_params() == {"old_entropy"}
    assert loss_traits("clip_v").adapter_params() == {"old_entropy", "old_second_term"}
    assert loss_traits("erc").adapter_params() == {"entropy", "old_entropy"}
    assert user_param_names("clip_b") == ["mu", "clip_c"]
    assert user_param_names("clip_v") == ["mu", "max_frac", "clip_c"]
    assert user_param_names("erc") == ["entropy_eps_low", "entropy_eps_high", "clip_c"]
    # what the adapters supply cannot be set in loss_params
    with pytest.raises(ValueError, match=r"unknown parameters \['old_entropy'\]"):
        check_loss_params("erc", {"old_entropy": 1.0})
    with pytest.raises(ValueError, match=r"unknown parameters \['old_second_term'\]"):
        check_loss_params("clip_v", {"old_second_term": 1.0})


def _gen() -> torch.Generator:
    raise AssertionError("no loss here draws random numbers")


def test_loss_arguments_pass_old_entropy_when_the_trait_asks() -> None:
    ent = torch.ones(1, 2, requires_grad=True)
    old = torch.full((1, 2), 2.0, requires_grad=True)
    got = loss_arguments("erc", {"clip_c": 3.0}, generator=_gen, entropy=ent, old_entropy=old)
    assert set(got) == {"clip_c", "entropy", "old_entropy"}
    assert torch.equal(got["old_entropy"], old.detach()) and not got["old_entropy"].requires_grad
    assert not got["entropy"].requires_grad
    # clip_b asks for pi_old's entropy only: the current one is not passed even when given
    got = loss_arguments("clip_b", {}, generator=_gen, entropy=ent, old_entropy=old)
    assert set(got) == {"old_entropy"}
    second = torch.zeros(1, 2)
    got = loss_arguments("clip_v", {}, generator=_gen, entropy=None, old_entropy=old,
                         old_second_term=second)  # fmt: skip
    assert set(got) == {"old_entropy", "old_second_term"}
    # a loss without the traits never receives them
    got = loss_arguments("ppo_clip", {}, generator=_gen, entropy=ent, old_entropy=old,
                         old_second_term=second)  # fmt: skip
    assert got == {}


def test_loss_arguments_missing_old_entropy_is_an_error_naming_the_loss() -> None:
    ent = torch.ones(1, 2)
    with pytest.raises(RuntimeError, match=r"'erc' needs pi_old's per-token entropy.*: store it"):
        loss_arguments("erc", {}, generator=_gen, entropy=ent, old_entropy=None,
                       missing_old_hint="store it")  # fmt: skip
    with pytest.raises(RuntimeError, match=r"'clip_b' needs pi_old's per-token entropy, which "
                                           r"did not reach it$"):  # fmt: skip
        loss_arguments("clip_b", {}, generator=_gen, entropy=None)
    with pytest.raises(RuntimeError, match=r"'clip_v' needs pi_old's per-token second term"):
        loss_arguments("clip_v", {}, generator=_gen, entropy=None, old_entropy=ent)
    # the current policy's entropy keeps its own hint
    with pytest.raises(RuntimeError, match=r"'erc' needs the current policy's.*: the wrapper"):
        loss_arguments("erc", {}, generator=_gen, entropy=None, old_entropy=ent,
                       missing_entropy_hint="the wrapper", missing_old_hint="store it")  # fmt: skip


# ---------------------------------------------------------------- Clip_B


def clip_b_batch(outlier_adv: float):
    """Rows A = +1 and A = ``outlier_adv`` x 4 valid tokens, a padding column and a padding row
    full of garbage. pi_old: p = 0.5 and H = ln 2 on seven tokens (S = 0.5 (ln 2 - ln 2) = 0),
    p = 0.25 and H = ln 2 on row 1, token 3 (S = 0.25 (ln 2 - ln 4) = -0.25 ln 2 = -0.173287).
    Ratios: row 0: 1.0, 1.5, 0.9, 1.1; row 1: 1.0, 0.5, 1.1, 1.3."""
    p_old = [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.25]]
    r = [[1.0, 1.5, 0.9, 1.1], [1.0, 0.5, 1.1, 1.3]]
    old = with_padding([[math.log(p) for p in row] for row in p_old], -INF)
    new = [[p * x for p, x in zip(ps, xs, strict=True)] for ps, xs in zip(p_old, r, strict=True)]
    lp = with_padding([[math.log(q) for q in row] for row in new], NAN)
    h = with_padding([[LN2] * 4, [LN2] * 4], NAN)
    adv = torch.tensor([1.0, outlier_adv, NAN], dtype=torch.float64)
    return lp, old, adv, padded_mask(2, 4), h


def test_clip_b_drops_the_negative_token_far_below_the_batch_mean() -> None:
    # S over the 8 valid tokens: seven 0, one -a with a = 0.25 ln 2 = 0.173287.
    # mean m = -a / 8 = -0.0216608; population var = (7 (a/8)^2 + (7a/8)^2) / 8 = 7 a^2 / 64
    # = 0.00328435, s = 0.0573092; the outlier's z = -7a/8 = -0.151626 = -sqrt(7) s = -2.6458 s.
    # mu = 2.5: z < -2.5 s and A < 0: dropped.  PPO (0.2 / 0.2, dual clip 3) elsewhere:
    # A = +1: r = 1, 1.5, 0.9, 1.1 -> loss -1, -1.2 (clipped), -0.9, -1.1; gradient -r or 0
    # A = -1: r = 1, 0.5, 1.1      -> loss 1, 0.8 (clipped), 1.1;           gradient r or 0
    lp, old, adv, mask, h = clip_b_batch(-1.0)
    loss, g, m = grad_of(clip_b, lp, old, adv, mask, old_entropy=h)
    expected = [[-1.0, -1.2, -0.9, -1.1], [1.0, 0.8, 1.1, 0.0]]
    grad = [[-1.0, 0.0, -0.9, -1.1], [1.0, 0.0, 1.1, 0.0]]
    torch.testing.assert_close(loss, with_padding(expected, 0.0))
    torch.testing.assert_close(g, with_padding(grad, 0.0))
    assert float(m["clip_b/frac_dropped"]) == pytest.approx(1 / 8)
    assert float(m["clip_b/frac_dropped_neg"]) == pytest.approx(1 / 4)
    assert float(m["clip_b/s_mean"]) == pytest.approx(-0.25 * LN2 / 8, rel=1e-12)
    assert float(m["clip_b/s_var"]) == pytest.approx(7 * (0.25 * LN2) ** 2 / 64, rel=1e-12)
    assert float(m["clip/frac_high"]) == pytest.approx(1 / 8)  # the r = 1.5, A > 0 token
    # mu = 2.7 > sqrt(7): the outlier stays, loss -A r = 1.3, gradient 1.3
    loss, g, m = grad_of(clip_b, lp, old, adv, mask, old_entropy=h, mu=2.7)
    assert float(loss[1, 3]) == pytest.approx(1.3) and float(g[1, 3]) == pytest.approx(1.3)
    assert float(m["clip_b/frac_dropped"]) == 0.0


def test_clip_b_keeps_every_positive_and_zero_advantage_token() -> None:
    # The same signal with A = +1 or 0 on the outlier's row: nothing is dropped. A = +1:
    # loss -r (1.3 > 1.2 is clipped: -1.2, gradient 0; 0.5 is kept for A > 0: -0.5, gradient -0.5)
    for a, row, grad in ((1.0, [-1.0, -0.5, -1.1, -1.2], [-1.0, -0.5, -1.1, 0.0]),
                         (0.0, [0.0] * 4, [0.0] * 4)):  # fmt: skip
        lp, old, adv, mask, h = clip_b_batch(a)
        loss, g, m = grad_of(clip_b, lp, old, adv, mask, old_entropy=h, mu=0.5)
        torch.testing.assert_close(loss[1, :4], torch.tensor(row, dtype=torch.float64))
        torch.testing.assert_close(g[1, :4], torch.tensor(grad, dtype=torch.float64))
        assert float(m["clip_b/frac_dropped"]) == 0.0


def test_clip_b_flat_signal_drops_nothing() -> None:
    # every S = 0: s = 0 < 1e-12, so even mu tiny keeps every token (the authors' guard)
    old = torch.full((1, 3), math.log(0.5), dtype=torch.float64)
    h = torch.full((1, 3), LN2, dtype=torch.float64)
    _, g, m = grad_of(clip_b, old, old, torch.tensor([-1.0]).double(), torch.ones(1, 3),
                      old_entropy=h, mu=1e-9)  # fmt: skip
    torch.testing.assert_close(g, torch.ones(1, 3, dtype=torch.float64))
    assert float(m["clip_b/frac_dropped"]) == 0.0


# ---------------------------------------------------------------- Clip_V


def clip_v_batch(d_neg: list[float], d_pos: list[float]):
    """pi_old p = 0.5, H = ln 2 on every token, so S = 0 and D = N - S = N; r = 1 (logprobs =
    old). Row 0 A = -1 with D = ``d_neg``, row 1 A = +1 with D = ``d_pos``; garbage padding."""
    t = len(d_neg)
    old = with_padding([[math.log(0.5)] * t] * 2, NAN)
    lp = with_padding([[math.log(0.5)] * t] * 2, INF)
    h = with_padding([[LN2] * t] * 2, INF)
    n = with_padding([d_neg, d_pos], NAN)
    adv = torch.tensor([-1.0, 1.0, NAN], dtype=torch.float64)
    return lp, old, adv, padded_mask(2, t), h, n


@pytest.mark.parametrize(("max_frac", "dropped"), [(0.1, 1), (0.125, 2), (0.2, 3), (1e-4, 1)])
def test_clip_v_drops_the_largest_shortfalls_up_to_the_cap(max_frac: float, dropped: int) -> None:
    # D over the 16 valid tokens: 0.5, 0.4, 0.3 and five 0 (A = -1), 0.6 and seven 0 (A = +1).
    # mean 1.8 / 16 = 0.1125; var = (0.25 + 0.16 + 0.09 + 0.36) / 16 - 0.1125^2 = 0.04109375,
    # s = 0.2027159. mu = 1: over = A < 0 and D > 0.2027: the 0.5, 0.4, 0.3 tokens (the A > 0
    # token with 0.6 is never dropped). K = max(floor(16 max_frac), 1):
    # 0.1 -> 1 (drop 0.5), 0.125 -> 2 (0.5, 0.4), 0.2 -> floor(3.2) = 3 (all), 1e-4 -> 1.
    # r = 1: kept tokens have loss -A = 1 (A = -1) or -1 (A = +1), gradient -A.
    lp, old, adv, mask, h, n = clip_v_batch([0.5, 0.4, 0.3, 0, 0, 0, 0, 0], [0.6] + [0.0] * 7)
    loss, g, m = grad_of(clip_v, lp, old, adv, mask, old_entropy=h, old_second_term=n, mu=1.0,
                         max_frac=max_frac)  # fmt: skip
    row0 = [0.0] * dropped + [1.0] * (8 - dropped)
    torch.testing.assert_close(loss, with_padding([row0, [-1.0] * 8], 0.0))
    torch.testing.assert_close(g, with_padding([row0, [-1.0] * 8], 0.0))
    assert float(m["clip_v/frac_dropped"]) == pytest.approx(dropped / 16)
    assert float(m["clip_v/frac_over"]) == pytest.approx(3 / 16)
    assert float(m["clip_v/d_std"]) == pytest.approx(math.sqrt(0.04109375), rel=1e-12)


def test_clip_v_threshold_is_not_centred_and_uses_the_sampled_token_signal() -> None:
    # D = N - S is compared with mu s, not centred on its mean. Row 0 (A = -1): N = 0 on every
    # token, p = 0.5 with H = ln 2 (S = 0) except token 3: p = 0.25, H = ln 2, S = -0.25 ln 2, so
    # D = 0.25 ln 2 = a = 0.173287 there and 0 elsewhere (row 1, A = +1: D = 0).
    # 16 tokens, one at a: var = a^2 / 16 - (a / 16)^2 = 15 a^2 / 256, s = 0.2421 a = 0.041948.
    # D = a > mu s for mu < 1 / 0.2421 = 4.131: mu = 4 drops it, mu = 4.2 keeps it.
    # Token 3's ratio r = 1.3 (A = -1): kept, loss 1.3 and gradient 1.3.
    p_old = [0.5, 0.5, 0.5, 0.25] + [0.5] * 4
    old = torch.tensor([[math.log(p) for p in p_old], [math.log(0.5)] * 8], dtype=torch.float64)
    lp = old.clone()
    lp[0, 3] += math.log(1.3)
    h = torch.full((2, 8), LN2, dtype=torch.float64)
    adv = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    args = dict(old_entropy=h, old_second_term=torch.zeros(2, 8, dtype=torch.float64))
    loss, g, m = grad_of(clip_v, lp, old, adv, torch.ones(2, 8), mu=4.0, **args)
    assert float(loss[0, 3]) == 0.0 and float(g[0, 3]) == 0.0
    assert float(m["clip_v/d_std"]) == pytest.approx(math.sqrt(15) / 16 * 0.25 * LN2, rel=1e-12)
    loss, g, _ = grad_of(clip_v, lp, old, adv, torch.ones(2, 8), mu=4.2, **args)
    assert float(loss[0, 3]) == pytest.approx(1.3) and float(g[0, 3]) == pytest.approx(1.3)


# ---------------------------------------------------------------- ERC


def erc_batch():
    """p_old = 0.05 on every valid token, H_old = 1. Row 0 (A = +1): r = 1.1, 1.5, 0.9, 1.0 and
    H = 1.0, 1.0, 1.06, 1.04; row 1 (A = -1): r = 0.9, 0.5, 1.2, 12 and H = 0.96, 0.9, 0.94,
    1.0. Garbage padding."""
    r = [[1.1, 1.5, 0.9, 1.0], [0.9, 0.5, 1.2, 12.0]]
    old = with_padding([[math.log(0.05)] * 4] * 2, -INF)
    lp = with_padding([[math.log(0.05 * x) for x in row] for row in r], NAN)
    h = with_padding([[1.0, 1.0, 1.06, 1.04], [0.96, 0.9, 0.94, 1.0]], NAN)
    h_old = with_padding([[1.0] * 4] * 2, 0.0)
    adv = torch.tensor([1.0, -1.0, NAN], dtype=torch.float64)
    return lp, old, adv, padded_mask(2, 4), h, h_old


def test_erc_detaches_tokens_whose_entropy_ratio_leaves_the_band() -> None:
    # rho = (H + 1e-8) / (1 + 1e-8) ~ H; band (0.95, 1.05); PPO clip 0.2 / 0.28, dual clip 10.
    # Row 0, A = +1: r = 1.1 (rho 1.0):  loss -1.1,  gradient -1.1
    #                r = 1.5 (rho 1.0):  -1.28 (clipped at 1.28), gradient 0
    #                r = 0.9 (rho 1.06): -0.9, gradient 0 (outside the band: value kept)
    #                r = 1.0 (rho 1.04): -1.0, gradient -1.0
    # Row 1, A = -1: r = 0.9 (rho 0.96): 0.9, gradient 0.9
    #                r = 0.5 (rho 0.9):  0.8 (clipped at 0.8), gradient 0
    #                r = 1.2 (rho 0.94): 1.2, gradient 0 (outside the band)
    #                r = 12  (rho 1.0):  10 (dual clip: -A clip_c), gradient 0
    lp, old, adv, mask, h, h_old = erc_batch()
    loss, g, m = grad_of(erc, lp, old, adv, mask, entropy=h, old_entropy=h_old)
    expected = [[-1.1, -1.28, -0.9, -1.0], [0.9, 0.8, 1.2, 10.0]]
    grad = [[-1.1, 0.0, 0.0, -1.0], [0.9, 0.0, 0.0, 0.0]]
    torch.testing.assert_close(loss, with_padding(expected, 0.0))
    torch.testing.assert_close(g, with_padding(grad, 0.0))
    # in the band: rho 1.0, 1.0, 1.04 (row 0), 0.96, 1.0 (row 1): 5 of 8
    assert float(m["erc/frac_in_band"]) == pytest.approx(5 / 8)
    # mean rho = (1 + 1 + 1.06 + 1.04 + 0.96 + 0.9 + 0.94 + 1) / 8 = 7.9 / 8 = 0.9875
    assert float(m["erc/ratio_mean"]) == pytest.approx(0.9875, abs=1e-8)
    assert float(m["clip/frac_dual"]) == pytest.approx(1 / 8)
    # a band of +-0.1 keeps every gradient but the clipped ones: r = 0.9 (A = +1) -> -0.9,
    # r = 1.2 (A = -1) -> 1.2
    _, g, m = grad_of(erc, lp, old, adv, mask, entropy=h, old_entropy=h_old,
                      entropy_eps_low=0.1, entropy_eps_high=0.1)  # fmt: skip
    grad = [[-1.1, 0.0, -0.9, -1.0], [0.9, 0.0, 1.2, 0.0]]
    torch.testing.assert_close(g, with_padding(grad, 0.0))
    assert float(m["erc/frac_in_band"]) == pytest.approx(1.0)


def test_erc_band_is_open() -> None:
    # float32: 1 + 1e-8 rounds to 1, so rho = 0.5 / 1.0 and 1.5 / 1.0 exactly; with eps 0.5 the
    # band is (0.5, 1.5) and both edges are outside it (the authors' strict > and <): gradient 0.
    # rho = 1 inside: gradient -A r = -1.
    old = torch.zeros(1, 3)
    h_old = torch.ones(1, 3)
    h = torch.tensor([[0.5, 1.5, 1.0]])
    _, g, m = grad_of(erc, old, old, torch.ones(1), torch.ones(1, 3), entropy=h,
                      old_entropy=h_old, entropy_eps_low=0.5, entropy_eps_high=0.5)  # fmt: skip
    assert g.tolist() == [[0.0, 0.0, -1.0]]
    assert float(m["erc/frac_in_band"]) == pytest.approx(1 / 3)


# ---------------------------------------------------------------- errors


def test_missing_or_misshaped_signals_and_bad_parameters() -> None:
    x = torch.zeros(2, 3)
    adv = torch.ones(2)
    with pytest.raises(ValueError, match=r"clip_b needs old_entropy="):
        clip_b(x, x, adv, x)
    with pytest.raises(ValueError, match=r"clip_v needs old_second_term="):
        clip_v(x, x, adv, x, old_entropy=x)
    with pytest.raises(ValueError, match=r"erc needs entropy="):
        erc(x, x, adv, x, old_entropy=x)
    with pytest.raises(ValueError, match=r"erc needs old_entropy="):
        erc(x, x, adv, x, entropy=x)
    with pytest.raises(ValueError, match=r"old_entropy shape \(2, 2\) != logprobs shape \(2, 3\)"):
        clip_b(x, x, adv, x, old_entropy=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"mu must be a finite float > 0, got 0.0"):
        clip_b(x, x, adv, x, old_entropy=x, mu=0.0)
    with pytest.raises(ValueError, match=r"max_frac must lie in \(0, 1\], got 2.0"):
        clip_v(x, x, adv, x, old_entropy=x, old_second_term=x, max_frac=2.0)
    with pytest.raises(ValueError, match=r"entropy_eps_low must lie in \(0, 1\], got 1.5"):
        erc(x, x, adv, x, entropy=x, old_entropy=x, entropy_eps_low=1.5)
    with pytest.raises(ValueError, match=r"entropy_eps_high must be a finite float > 0, got nan"):
        erc(x, x, adv, x, entropy=x, old_entropy=x, entropy_eps_high=math.nan)
    with pytest.raises(ValueError, match=r"clip_c must be a finite float > 1"):
        clip_b(x, x, adv, x, old_entropy=x, clip_c=0.5)


# ---------------------------------------------------------------- the authors' code, transcribed


def rollout(seed: int, b: int = 8, t: int = 24, v: int = 11):
    """pi_old's logits [B, T, V] (float32, peaked rows so p spans several decades), sampled
    tokens, pi_old's log-probs and entropy, new log-probs, right padding, mixed advantages."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g) * 3.0
    logp = torch.log_softmax(logits, -1)
    tokens = torch.multinomial(logp.exp().view(-1, v), 1, generator=g).view(b, t)
    old = logp.gather(-1, tokens[..., None])[..., 0]
    h = -(logp.exp() * logp).sum(-1)
    new = old + 0.3 * torch.randn(b, t, generator=g)
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    scores = torch.randn(b, generator=g).round()  # some exact zeros
    adv = scores[:, None].expand(b, t) * mask  # the authors' tiled, masked advantages
    return logits, old, h, new, mask, adv


def trinity_ppo_losses(log_prob, old_log_prob, advantages, low=0.2, high=0.2, c=3.0):
    """Trinity's PPOPolicyLossFn (verl's vanilla), per token, before aggregation."""
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    return torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)


def clipb_response_mask(LP, H, M, A, mu):
    """ClipBAdvantageFn's token filtering (clipb_advantage.py), line for line."""
    p = LP.exp()
    S = p * (H + LP)
    xS = S.detach().to(torch.float32)
    m = M.to(torch.float32)
    n = m.sum().clamp_min(1.0)
    ES = (xS * m).sum() / n
    varS = ((xS - ES) ** 2 * m).sum() / n
    stdS = varS.sqrt()
    z = xS - ES
    if stdS.item() < 1e-12:
        keep = torch.ones_like(M, dtype=M.dtype)
    else:
        pos_mask = A > 0
        neg_mask = A < 0
        keep_pos = torch.ones_like(pos_mask, dtype=torch.bool)
        keep_neg = z >= -(mu * stdS)
        keep_zero = torch.ones_like(pos_mask, dtype=torch.bool)
        keep_bool = torch.where(pos_mask, keep_pos, torch.where(neg_mask, keep_neg, keep_zero))
        keep = keep_bool.to(M.dtype)
    return M * keep


def compute_N_from_logits(logits):
    """examples/entropy/clipv_dp_actor.py, line for line."""
    z = logits.to(torch.float32)
    logp = torch.nn.functional.log_softmax(z, dim=-1)
    p = logp.exp()
    p2 = p * p
    sum_p2 = p2.sum(dim=-1)
    term2 = (p2 * logp).sum(dim=-1)
    entropy = -(p * logp).sum(dim=-1)
    return entropy * sum_p2 + term2


def clipv_response_mask(LP, H, N, M, A, mu, max_frac):
    """ClipVAdvantageFn's token filtering (clipv_advantage.py), line for line."""
    p = LP.exp()
    S = p * (H + LP)
    xD = (N - S).detach().to(torch.float32)
    m = M.to(torch.float32)
    n = m.sum().clamp_min(1.0)
    mean_d = (xD * m).sum() / n
    var_d = ((xD - mean_d) ** 2 * m).sum() / n
    std_d = var_d.sqrt()
    if std_d.item() < 1e-12:
        keep = torch.ones_like(M, dtype=M.dtype)
    else:
        pos_mask = A > 0
        neg_mask = A < 0
        keep_neg = xD <= (mu * std_d)
        keep_bool = torch.where(pos_mask, torch.ones_like(pos_mask), keep_neg)
        total_tokens = m.sum().clamp_min(1.0)
        clipped_mask = (M > 0) & (~keep_bool)
        frac_clipped = (clipped_mask.to(torch.float32).sum() / total_tokens).item()
        if frac_clipped <= max_frac:
            keep = keep_bool.to(M.dtype)
        else:
            max_clipped_tokens = max(int(max_frac * total_tokens.item()), 1)
            neg_to_clip = neg_mask & (M > 0) & (~keep_neg)
            neg_to_clip_count = int(neg_to_clip.to(torch.int32).sum().item())
            if neg_to_clip_count <= max_clipped_tokens:
                keep = keep_bool.to(M.dtype)
            else:
                candidate_scores = xD.masked_fill(~neg_to_clip, float("-inf")).view(-1)
                k = min(max_clipped_tokens, neg_to_clip_count)
                _, indices = torch.topk(candidate_scores, k, largest=True)
                limited_clip_mask = torch.zeros_like(candidate_scores, dtype=torch.bool)
                limited_clip_mask[indices] = True
                limited_clip_mask = limited_clip_mask.view_as(xD)
                final_keep = keep_bool.clone()
                final_keep[neg_to_clip] = True
                final_keep[limited_clip_mask] = False
                keep = final_keep.to(M.dtype)
    return M * keep


@pytest.mark.parametrize("seed", range(4))
def test_clip_b_matches_the_authors_filter_on_top_of_trinity_ppo(seed: int) -> None:
    _, old, h, new, mask, adv = rollout(seed)
    M = mask.to(torch.float32)
    kept = clipb_response_mask(old, h, M, adv, mu=1.0)
    ref = trinity_ppo_losses(new, old, adv) * kept  # the authors drop tokens from the mask
    loss, g, m = grad_of(clip_b, new, old, adv, mask, old_entropy=h, mu=1.0)
    torch.testing.assert_close(loss, torch.where(mask, ref, torch.zeros(())))
    dropped = mask & (kept == 0) & (adv != 0)  # A = 0 tokens are never dropped by Clip_B
    assert dropped.any(), "the batch should exercise the filter"
    assert torch.equal(dropped, mask & (kept == 0))
    assert (g[dropped] == 0).all() and float(m["clip_b/frac_dropped"]) == pytest.approx(
        float(dropped.sum() / mask.sum())
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_frac", [1e-4, 0.02, 0.5])
def test_clip_v_matches_the_authors_filter_and_cap(seed: int, max_frac: float) -> None:
    logits, old, h, new, mask, adv = rollout(seed)
    n = compute_N_from_logits(logits)
    M = mask.to(torch.float32)
    kept = clipv_response_mask(old, h, n, M, adv, mu=1.0, max_frac=max_frac)
    # their mask also removes A = 0 tokens above the threshold; those have loss 0 either way
    ref = trinity_ppo_losses(new, old, adv) * kept
    loss, g, m = grad_of(clip_v, new, old, adv, mask, old_entropy=h, old_second_term=n, mu=1.0,
                         max_frac=max_frac)  # fmt: skip
    torch.testing.assert_close(loss, torch.where(mask, ref, torch.zeros(())))
    dropped = mask & (kept == 0) & (adv < 0)
    assert dropped.any()
    assert float(m["clip_v/frac_dropped"]) == pytest.approx(float(dropped.sum() / mask.sum()))
    assert (g[dropped] == 0).all() and (g[mask & (kept > 0) & (adv != 0)] != 0).any()
    # the cap K = max(floor(max_frac n), 1) binds for the small fractions (n ~ 150 tokens:
    # K = 1 for 1e-4, 2 or 3 for 0.02) and not for 0.5
    n_valid, n_over = int(mask.sum()), round(float(m["clip_v/frac_over"]) * int(mask.sum()))
    cap = max(int(max_frac * n_valid), 1)
    assert int(dropped.sum()) == min(cap, n_over)
    assert (n_over > cap) == (max_frac < 0.5)


def test_old_second_term_is_the_authors_nec() -> None:
    """flexent.diagnostics.entropy_second_term (what the TRL adapter stores as pi_old's second
    term) equals compute_N_from_logits, Clip_V's ``necs``."""
    logits, *_ = rollout(7)
    torch.testing.assert_close(entropy_second_term(logits), compute_N_from_logits(logits))


def grpo_erc_loss(old_log_prob, log_prob, old_entropy, entropy, advantages, response_mask,
                  low, high, c, mask_low, mask_high):  # fmt: skip
    """Kwai-Klear/ERC compute_policy_loss_grpo_erc (token-mean, no TIS), line for line."""
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    entropy_ratio = (entropy + 1e-8) / (old_entropy + 1e-8)
    balanced_mask = (
        ((entropy_ratio > mask_low) & (entropy_ratio < mask_high)) & response_mask.bool()
    ).bool()
    pg_losses = torch.where(balanced_mask.bool(), pg_losses, pg_losses.detach())
    pg_loss = (pg_losses * response_mask).sum() / response_mask.sum()  # agg_loss token-mean
    entropy_frac = balanced_mask.sum() / response_mask.bool().sum()
    return pg_loss, entropy_frac


@pytest.mark.parametrize("seed", range(4))
def test_erc_matches_the_authors_loss(seed: int) -> None:
    # the recipe's settings: band (0.95, 1.05), clip 0.2 / 0.28, clip_ratio_c 10; the current
    # entropy moves by up to +-10 % so some tokens leave the band
    _, old, h_old, new, mask, adv = rollout(seed)
    g = torch.Generator().manual_seed(100 + seed)
    h = h_old * (1 + 0.1 * (2 * torch.rand(h_old.shape, generator=g) - 1))
    M = mask.to(torch.float32)
    lp_ref = new.clone().requires_grad_(True)
    ref, frac = grpo_erc_loss(old, lp_ref, h_old, h, adv, M, 0.2, 0.28, 10.0, 0.95, 1.05)
    ref.backward()
    lp = new.clone().requires_grad_(True)
    out = erc(lp, old, adv, mask, entropy=h, old_entropy=h_old)
    total = out.per_token_loss.sum() / M.sum()
    total.backward()
    torch.testing.assert_close(total, ref)
    torch.testing.assert_close(lp.grad, lp_ref.grad)
    assert float(out.metrics["erc/frac_in_band"]) == pytest.approx(float(frac))
    assert 0.2 < float(frac) < 0.9  # the batch exercises both sides of the band

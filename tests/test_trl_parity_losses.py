"""VESPO and LUSPO: hand-derived values and gradients; and parity of flexent's ``vespo``,
``luspo``, ``cispo`` and ``sapo`` with TRL 1.16's ``loss_type`` of the same name.

TRL's loss is TRL's own code: ``GRPOTrainer._compute_loss`` run on a stub ``self``
(``types.SimpleNamespace``) whose ``_get_per_token_logps_and_entropies`` returns our log-prob
tensor, with a real ``GRPOConfig`` for the hyper-parameters (TRL's defaults unless a test says
otherwise). flexent's per-token loss is reduced with ``flexent.losses.aggregate`` in the mode
that matches TRL's normalisation for that ``loss_type``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from flexent.losses.aggregate import aggregate
from flexent.losses.importance import cispo
from flexent.losses.registry import LossTraits, loss_traits
from flexent.losses.sequence import gspo, luspo
from flexent.losses.soft import sapo
from flexent.losses.vespo import vespo


def grad_of(fn, logprobs: torch.Tensor, *args, **kwargs):
    lp = logprobs.detach().clone().requires_grad_(True)
    out = fn(lp, *args, **kwargs)
    (g,) = torch.autograd.grad(out.per_token_loss.sum(), lp)
    return out.per_token_loss.detach(), g, out.metrics


def test_traits() -> None:
    # VESPO: one weight per sequence but no clip (no eps scale applies); TRL normalises it like
    # dapo (token count). LUSPO: GSPO's sequence clip, TRL's luspo normalisation (token sums).
    assert loss_traits("vespo") == LossTraits(default_agg="token-mean")
    assert loss_traits("luspo") == LossTraits(sequence_level=True, default_agg="seq-mean-token-sum")


# ---------------------------------------------------------------- VESPO by hand


def test_vespo_hand_values_and_gradient() -> None:
    # old p = 0.5 everywhere. phi(w) = exp(lambda + k log w - lambda w).
    # seq 0, A = +1 (k 2, lambda 3): log r = [0.1, -0.3] -> log w = -0.2, w = 0.818731
    #   phi = exp(3 - 0.4 - 3 * 0.818731) = exp(0.143808) = 1.154662
    #   logprobs = ln .5 + [0.1, -0.3] = [-0.593147, -0.993147]
    #   loss = -phi A logprobs = [0.684885, 1.146749]; gradient -phi A = -1.154662
    # seq 1, A = -1 (k 3, lambda 2): log r = [0.2, 0.2] -> log w = 0.4 (a sum, not a mean),
    #   w = 1.491825, phi = exp(2 + 1.2 - 2 * 1.491825) = exp(0.216351) = 1.241538
    #   logprobs = ln .5 + 0.2 = -0.493147; loss = phi * logprobs = -0.612261; gradient +1.241538
    old = torch.full((2, 2), math.log(0.5), dtype=torch.float64)
    lp = old + torch.tensor([[0.1, -0.3], [0.2, 0.2]], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, g, m = grad_of(vespo, lp, old, adv, torch.ones(2, 2, dtype=torch.bool))
    expected = torch.tensor([[0.684885, 1.146749], [-0.612261, -0.612261]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    phi = torch.tensor([[1.154662], [1.241538]], dtype=torch.float64)
    torch.testing.assert_close(g, (-phi * adv[:, None]).expand(2, 2), atol=1e-6, rtol=0)
    # valid-token mean of phi: (2 * 1.154662 + 2 * 1.241538) / 4 = 1.198100
    assert float(m["vespo/phi_mean"]) == pytest.approx(1.198100, abs=1e-6)
    # nothing is clipped; clip/frac_* count tokens outside the 0.2 band: none here
    assert float(m["clip/frac"]) == 0.0


def test_vespo_kernel_shape_and_no_length_normalisation() -> None:
    # On policy (w = 1) phi(1) = exp(lambda + 0 - lambda) = 1: the REINFORCE gradient -A.
    lp = torch.log(torch.tensor([[0.3, 0.6]], dtype=torch.float64))
    for a in (1.0, -1.0):
        _, g, _ = grad_of(vespo, lp, lp, torch.tensor([a]).double(), torch.ones(1, 2))
        torch.testing.assert_close(g, torch.full((1, 2), -a, dtype=torch.float64))
    # The kernel peaks at w = k / lambda: A > 0: w = 2/3, phi = (4/9) e = 1.208125;
    # A < 0: w = 1.5, phi = 3.375 / e = 1.241593. Neighbours (w x 0.9, w x 1.1) weigh less.
    for a, peak, top in ((1.0, 2 / 3, 1.208125), (-1.0, 1.5, 1.241593)):
        w = torch.tensor([[peak * 0.9], [peak], [peak * 1.1]], dtype=torch.float64)
        _, g, _ = grad_of(vespo, w.log(), torch.zeros_like(w), torch.full((3,), a).double(),
                          torch.ones(3, 1))  # fmt: skip
        phi = (-g / a)[:, 0]
        assert float(phi[1]) == pytest.approx(top, abs=1e-6)
        assert phi[0] < phi[1] and phi[2] < phi[1]
    # w is the product of the token ratios: two tokens with log r = 0.2 weigh like one with 0.4
    # (GSPO would take their mean, 0.2).
    two = torch.tensor([[0.2, 0.2]], dtype=torch.float64)
    one = torch.tensor([[0.4, 0.0]], dtype=torch.float64)
    mask_one = torch.tensor([[True, False]])
    _, g2, _ = grad_of(vespo, two, torch.zeros(1, 2).double(), torch.ones(1).double(),
                       torch.ones(1, 2))  # fmt: skip
    _, g1, _ = grad_of(vespo, one, torch.zeros(1, 2).double(), torch.ones(1).double(), mask_one)
    assert float(g2[0, 0]) == pytest.approx(float(g1[0, 0]), rel=1e-12)
    assert float(g1[0, 1]) == 0.0  # the masked token


def test_vespo_clamps_log_w_and_zeroes_an_overflowing_weight() -> None:
    # log w = -15 - 15 = -30 is clamped to log(1e-8): phi = e^3 (1e-8)^2 e^(-3e-8) = 2.008554e-15.
    # log w = 15 + 15 = 30 is clamped to 20: phi = exp(3 + 40 - 3 e^20) = 0 (underflow).
    lr = torch.tensor([[-15.0, -15.0], [15.0, 15.0]], dtype=torch.float64)
    _, g, _ = grad_of(vespo, lr - 1.0, torch.full((2, 2), -1.0).double(),
                      torch.ones(2).double(), torch.ones(2, 2))  # fmt: skip
    assert float(-g[0, 0]) == pytest.approx(2.008554e-15, rel=1e-6)
    assert float(g[1, 0]) == 0.0 and float(g[1, 1]) == 0.0
    # k = 100, lambda = 1e-4, log w = 10: log phi = 1e-4 + 1000 - 1e-4 e^10 = 997.80 > log(max
    # float64) = 709.78: exp overflows to inf, which TRL's nan_to_num (kept) turns into 0.
    lp = torch.tensor([[10.0]], dtype=torch.float64) - 20.0
    loss, g, m = grad_of(vespo, lp, torch.full((1, 1), -20.0).double(), torch.ones(1).double(),
                         torch.ones(1, 1), k_pos=100.0, lambda_pos=1e-4)  # fmt: skip
    assert float(loss[0, 0]) == 0.0 and float(g[0, 0]) == 0.0
    assert math.isfinite(float(m["vespo/phi_mean"]))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"k_pos": -1.0}, "k_pos must be a finite float >= 0, got -1.0"),
        ({"k_neg": math.inf}, "k_neg must be a finite float >= 0, got inf"),
        ({"lambda_pos": 0.0}, "lambda_pos must be a finite float >= 0.0001, got 0.0"),
        ({"lambda_neg": 5e-5}, "lambda_neg must be a finite float >= 0.0001, got 5e-05"),
        ({"k_pos": True}, "k_pos must be a float >= 0, got True"),
        ({"lambda_pos": "3"}, "lambda_pos must be a float >= 0.0001, got '3'"),
    ],
)
def test_vespo_bad_parameters(kwargs, needle) -> None:
    lp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        vespo(lp, lp, torch.ones(1), torch.ones(1, 2), **kwargs)


# ---------------------------------------------------------------- LUSPO by hand


def test_luspo_hand_values_and_gradient() -> None:
    # eps 2e-3 / 2.5e-3 (the defaults): band [0.998, 1.0025] on s_i = exp(mean_t log r_it).
    # seq 0, A = +1, 2 valid of 3: log r = [0.001, -0.003] -> s = e^-0.001 = 0.999000 (inside):
    #   loss -s per token, gradient -s per token (GSPO-token form)
    # seq 1, A = -1, 3 tokens: log r = 0.004 each -> s = e^0.004 = 1.004008; A < 0 does not
    #   clip above: loss +s, gradient +s
    # seq 2, A = -1, 2 of 3: log r = [-0.01, 0] -> s = e^-0.005 = 0.995012 < 0.998, A < 0:
    #   clipped: loss -A (1 - 2e-3) = 0.998, gradient 0
    old = torch.full((3, 3), -1.0, dtype=torch.float64)
    lr = torch.tensor([[0.001, -0.003, 9.0], [0.004] * 3, [-0.01, 0.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 0]]).bool()
    adv = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    lp = (old + lr).requires_grad_(True)
    out = luspo(lp, old, adv, mask)
    s0, s1 = 0.999000, 1.004008
    expected = torch.tensor([[-s0, -s0, 0.0], [s1, s1, s1], [0.998, 0.998, 0.0]]).double()
    torch.testing.assert_close(out.per_token_loss, expected, atol=1e-6, rtol=0)
    # seq-mean-token-sum: (2 * -0.999000 + 3 * 1.004008 + 2 * 0.998) / 3 = 1.003341
    # (GSPO's seq-mean-token-mean would give (-0.999000 + 1.004008 + 0.998) / 3 = 0.334336)
    loss = aggregate(out.per_token_loss, mask, loss_traits("luspo").default_agg)
    assert float(loss.detach()) == pytest.approx(1.003341, abs=1e-6)
    loss.backward()
    grad = torch.tensor([[-s0, -s0, 0.0], [s1, s1, s1], [0.0, 0.0, 0.0]]).double() / 3
    torch.testing.assert_close(lp.grad, grad, atol=1e-6, rtol=0)
    assert float(out.metrics["clip/frac_low"]) == pytest.approx(2 / 7)  # seq 2's two tokens


def test_luspo_weighs_a_sequence_by_its_length() -> None:
    # Two sequences with the same ratio s = e^0.1 (unclipped, eps 0.2) and A = +1, of lengths
    # 1 and 3: LUSPO's gradient on each token is -s / B whatever the length, so the long one's
    # total pull (3 tokens) is 3x the short one's; GSPO (seq-mean-token-mean) gives each
    # token -s / (B |y_i|), the same total per sequence.
    s = math.exp(0.1)
    old = torch.zeros(2, 3, dtype=torch.float64)
    lp = torch.full((2, 3), 0.1, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]]).bool()
    adv = torch.ones(2, dtype=torch.float64)
    grads = {}
    for name, fn in (("luspo", luspo), ("gspo", gspo)):
        x = lp.clone().requires_grad_(True)
        out = fn(x, old, adv, mask, eps_low=0.2, eps_high=0.2)
        aggregate(out.per_token_loss, mask, loss_traits(name).default_agg).backward()
        grads[name] = x.grad
    torch.testing.assert_close(grads["luspo"], -s / 2 * mask.double())
    expected_gspo = torch.tensor([[-s / 2, 0, 0], [-s / 6] * 3], dtype=torch.float64)
    torch.testing.assert_close(grads["gspo"], expected_gspo)


# ---------------------------------------------------------------- TRL 1.16's own loss


def trl_loss(loss_type: str, lp, old, adv, mask, tmp_path, **config):
    """``(loss, d loss / d lp)`` of TRL's ``GRPOTrainer._compute_loss`` for ``loss_type`` on the
    batch, with a ``GRPOConfig`` of TRL's defaults plus ``config``. The stub's attributes are
    set from the config as ``GRPOTrainer.__init__`` sets them (one process, one accumulation
    step, no vLLM, no KL, no entropy bonus: TRL's defaults)."""
    pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], loss_type=loss_type,
                      **config)  # fmt: skip
    leaf = lp.detach().clone().requires_grad_(True)
    B, T = lp.shape
    stub = SimpleNamespace(
        args=args,
        loss_type=args.loss_type,
        importance_sampling_level=args.importance_sampling_level,
        epsilon_low=args.epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        beta=args.beta,
        top_entropy_quantile=args.top_entropy_quantile,
        off_policy_mask_threshold=args.off_policy_mask_threshold,
        use_vllm=args.use_vllm,
        vllm_importance_sampling_correction=args.vllm_importance_sampling_correction,
        entropy_coef=args.entropy_coef,
        use_adaptive_entropy=args.use_adaptive_entropy,
        _entropy_bonus_enabled=args.entropy_coef != 0.0 or args.use_adaptive_entropy,
        aux_loss_enabled=False,
        get_gamma_weights=GRPOTrainer.get_gamma_weights,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=args.gradient_accumulation_steps,
        accelerator=SimpleNamespace(
            num_processes=1,
            gather=lambda t: t,
            gather_for_metrics=lambda t: t,
            reduce=lambda t, reduction: t,
        ),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (leaf, torch.zeros_like(leaf), None),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv,
        "old_per_token_logps": old,
        # dapo/cispo/vespo divide by this (the generation batch's token count): here this batch's
        "num_items_in_batch": mask.sum(),
    }
    loss = GRPOTrainer._compute_loss(stub, None, inputs)
    loss.backward()
    return loss.detach(), leaf.grad, stub._metrics["train"]


# TRL's normalisation for each loss_type, as a flexent aggregation (grpo_trainer.py, the end of
# _compute_loss): cispo/vespo divide the masked sum by num_items_in_batch (token-mean here);
# sapo takes grpo's per-sequence token mean and luspo the per-sequence token sum, each then
# averaged over *every* sequence of the micro-batch, empty ones included (num_seqs=B).
TRL_AGG = {
    "vespo": ("token-mean", False),
    "cispo": ("token-mean", False),
    "sapo": ("seq-mean-token-mean", True),
    "luspo": ("seq-mean-token-sum", True),
}


def flexent_loss(fn, name: str, lp, old, adv, mask, **kwargs):
    x = lp.detach().clone().requires_grad_(True)
    mode, all_seqs = TRL_AGG[name]
    out = fn(x, old, adv, mask, **kwargs)
    loss = aggregate(out.per_token_loss, mask, mode, num_seqs=lp.shape[0] if all_seqs else None)
    loss.backward()
    return loss.detach(), x.grad, out.metrics


def batch(seed: int, spread: float, per_token_adv: bool = False):
    """6 x 7, float64, right padding with one empty row; log r ~ N(0, spread^2) per token
    (|log r| < 20, so TRL's unclamped ratios equal flexent's clamped ones); mixed-sign A."""
    g = torch.Generator().manual_seed(seed)
    B, T = 6, 7
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3 - 0.05
    lp = (old + spread * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=-1e-3)
    lengths = torch.tensor([7, 5, 3, 0, 6, 1])
    mask = torch.arange(T)[None, :] < lengths[:, None]
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    if not per_token_adv:
        adv = adv[:, 0].clone()
    return lp, old, adv, mask


def assert_parity(ours, theirs, rtol: float = 1e-12) -> None:
    loss, grad, _ = ours
    loss_trl, grad_trl, _ = theirs
    torch.testing.assert_close(loss, loss_trl, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(grad, grad_trl, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("per_token_adv", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_vespo_matches_trl(tmp_path, seed: int, per_token_adv: bool) -> None:
    """TRL's defaults (k 2 / 3, lambda 3 / 2). TRL clamps token log-ratios to [-20, 20] as
    flexent does, so no input is out of bounds: sequence 0 holds tokens with log r = 30 and
    -25 (clamped to 20 and -20: they cancel, where unclamped they would add 5) and sequence 4
    sums to log w = -24 (clamped to log 1e-8)."""
    lp, old, adv, mask = batch(seed, 0.4, per_token_adv)
    old = old.clone()
    old[0, 2] = lp[0, 2] - 30.0
    old[0, 3] = lp[0, 3] + 25.0
    old[4, :6] = lp[4, :6] + 4.0
    ours = flexent_loss(vespo, "vespo", lp, old, adv, mask)
    theirs = trl_loss("vespo", lp, old, adv, mask, tmp_path)
    assert_parity(ours, theirs)
    assert (ours[1][mask] != 0).any()


@pytest.mark.parametrize(
    ("eps", "config"),
    [
        ((0.2, 0.2), {}),  # TRL's default epsilon
        ((2e-3, 2.5e-3), {"epsilon": 2e-3, "epsilon_high": 2.5e-3}),  # the paper's (flexent's)
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_luspo_matches_trl(tmp_path, seed: int, eps, config) -> None:
    """TRL's luspo with importance_sampling_level="sequence" (the paper's setup). Sequence-level
    advantages [B], as GRPO's (with per-token A the GSPO-token gradient differs by design)."""
    spread = 0.5 if not config else 0.01
    lp, old, adv, mask = batch(seed, spread)
    ours = flexent_loss(luspo, "luspo", lp, old, adv, mask, eps_low=eps[0], eps_high=eps[1])
    theirs = trl_loss("luspo", lp, old, adv, mask, tmp_path, importance_sampling_level="sequence",
                      **config)  # fmt: skip
    assert_parity(ours, theirs)
    # both sides of the clip act somewhere over the seeds' batches; here: some sequence is
    # clipped (zero gradient) and some is not
    valid_rows = mask.any(-1)
    row_clipped = (ours[1] == 0).all(-1) & valid_rows
    assert (valid_rows & ~row_clipped).any()
    metrics = theirs[2]
    frac = metrics["clip_ratio/region_mean"][-1]
    assert frac == pytest.approx(float(row_clipped.sum()) / 6)  # TRL: a fraction of sequences


def test_luspo_clips_on_both_sides_in_the_parity_batches(tmp_path) -> None:
    # The parity above is not vacuous: over its batches both TRL clip counters are positive.
    lows, highs = [], []
    for seed in range(3):
        for spread, config in ((0.5, {}), (0.01, {"epsilon": 2e-3, "epsilon_high": 2.5e-3})):
            lp, old, adv, mask = batch(seed, spread)
            m = trl_loss("luspo", lp, old, adv, mask, tmp_path,
                         importance_sampling_level="sequence", **config)[2]  # fmt: skip
            lows.append(m["clip_ratio/low_mean"][-1])
            highs.append(m["clip_ratio/high_mean"][-1])
    assert max(lows) > 0 and max(highs) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_cispo_matches_trl_with_its_ratio_cap(tmp_path, seed: int) -> None:
    """TRL's cispo weight is min(r, epsilon_high), an absolute cap with no lower bound; flexent's
    is verl's clip(r, 1 - eps_low, 1 + eps_high). With TRL's recommended cap 5.0 (ScaleRL,
    grpo_config.py) = flexent eps_high 4.0, they agree where r >= 1 - eps_low = 0.8: the ratios
    here lie in [0.85, 8], so the cap acts and the lower bound does not (departure: below)."""
    g = torch.Generator().manual_seed(seed)
    lp, old, adv, mask = batch(seed, 0.0, per_token_adv=True)
    log_r = torch.empty_like(lp).uniform_(math.log(0.85), math.log(8.0), generator=g)
    old = lp - log_r
    ours = flexent_loss(cispo, "cispo", lp, old, adv, mask, eps_low=0.2, eps_high=4.0)
    theirs = trl_loss("cispo", lp, old, adv, mask, tmp_path, epsilon_high=5.0)
    assert_parity(ours, theirs)
    assert float(ours[2]["cispo/frac_weight_clipped"]) > 0  # the cap 5 acts


@pytest.mark.parametrize("per_token_adv", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_sapo_matches_trl(tmp_path, seed: int, per_token_adv: bool) -> None:
    """TRL's default temperatures (1.0 / 1.05) are flexent's tau_pos / tau_neg. TRL builds its
    temperatures with torch.where on Python floats, a float32 tensor, so its 1.05 is
    float32(1.05) = 1.0499999523...; flexent keeps the compute dtype (float64 here). With that
    float32 value as tau_neg the two agree to 1e-12; with 1.05 itself, to about 1e-6."""
    lp, old, adv, mask = batch(seed, 0.6, per_token_adv)
    theirs = trl_loss("sapo", lp, old, adv, mask, tmp_path)
    tau32 = float(torch.tensor(1.05, dtype=torch.float32))
    assert_parity(flexent_loss(sapo, "sapo", lp, old, adv, mask, tau_neg=tau32), theirs)
    assert_parity(flexent_loss(sapo, "sapo", lp, old, adv, mask), theirs, rtol=1e-6)


# ---------------------------------------------------------------- where flexent departs on purpose


def test_departures_from_trl(tmp_path) -> None:
    # 1. luspo (and sapo, cispo): flexent clamps token log-ratios to [-20, 20] before using them;
    #    TRL clamps only in vespo. One sequence, A = -1 (not clipped above), log r = [30, 0]:
    #    TRL's s = exp(15), flexent's exp(mean(20, 0)) = exp(10). Loss = |y| s = 2 s.
    old = torch.full((1, 2), -40.0, dtype=torch.float64)
    lp = old + torch.tensor([[30.0, 0.0]], dtype=torch.float64)
    adv, mask = torch.tensor([-1.0], dtype=torch.float64), torch.ones(1, 2, dtype=torch.bool)
    ours = flexent_loss(luspo, "luspo", lp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    theirs = trl_loss("luspo", lp, old, adv, mask, tmp_path, importance_sampling_level="sequence")
    assert float(ours[0]) == pytest.approx(2 * math.exp(10.0), rel=1e-12)
    assert float(theirs[0]) == pytest.approx(2 * math.exp(15.0), rel=1e-12)
    # sapo at log r = -25, A = +1: TRL's gradient -A f'(r) r = -4 s (1 - s) r is tiny but not 0;
    # the clamp gives flexent's exactly 0. The values differ by the gate's change between
    # r = e^-25 (TRL) and e^-20 (flexent): -f'(0) (e^-20 - e^-25) with f'(0) = 4 s (1 - s),
    # s = sigmoid(-1) = 0.268941: -0.786448 * 2.047266e-9 = -1.610063e-9.
    old = torch.full((1, 1), -1.0, dtype=torch.float64)
    lp, adv, mask = old - 25.0, torch.tensor([1.0], dtype=torch.float64), torch.ones(1, 1).bool()
    ours = flexent_loss(sapo, "sapo", lp, old, adv, mask)
    theirs = trl_loss("sapo", lp, old, adv, mask, tmp_path)
    assert float(ours[1][0, 0]) == 0.0 and 0 < abs(float(theirs[1][0, 0])) < 1e-10
    assert float(ours[0] - theirs[0]) == pytest.approx(-1.610063e-9, rel=1e-4)
    # 2. cispo: TRL's weight min(r, epsilon_high) has no lower bound and, at TRL's default
    #    epsilon_high = epsilon = 0.2, caps every weight at 0.2. r = 0.5 and r = 1, A = +1:
    #    TRL (default):  w = 0.2, 0.2        TRL (cap 5.0): w = 0.5, 1
    #    flexent (default eps 0.2 / 0.2: clip(r, 0.8, 1.2)): w = 0.8, 1   (gradient -w A)
    old = torch.full((1, 2), -1.0, dtype=torch.float64)
    lp = old + torch.tensor([[math.log(0.5), 0.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    w = {
        "trl_default": -trl_loss("cispo", lp, old, adv, mask, tmp_path)[1] * 2,
        "trl_cap5": -trl_loss("cispo", lp, old, adv, mask, tmp_path, epsilon_high=5.0)[1] * 2,
        "flexent": -flexent_loss(cispo, "cispo", lp, old, adv, mask)[1] * 2,
    }  # token-mean over 2 tokens: d loss / d lp = -w A / 2
    torch.testing.assert_close(w["trl_default"], torch.tensor([[0.2, 0.2]]).double())
    torch.testing.assert_close(w["trl_cap5"], torch.tensor([[0.5, 1.0]]).double())
    torch.testing.assert_close(w["flexent"], torch.tensor([[0.8, 1.0]]).double())
    # 3. vespo: TRL raises lambda below 1e-4 to 1e-4 and takes negative k; flexent refuses both
    #    (test_vespo_bad_parameters), so every accepted setting gives TRL's kernel: at the floor
    #    itself, TRL's clamp is the identity and the weights agree.
    pytest.importorskip("trl")
    from trl import GRPOTrainer

    lr = torch.tensor([[0.3, -0.1, 0.4]], dtype=torch.float64)
    for lam in (1e-4, 1e-3):
        phi_trl = GRPOTrainer.get_gamma_weights(
            torch.ones(1, 1).double(), lr, torch.ones(1, 3), None, k_pos=2.0, lambda_pos=lam
        )
        _, g, _ = grad_of(vespo, lr, torch.zeros(1, 3).double(), torch.ones(1).double(),
                          torch.ones(1, 3), lambda_pos=lam)  # fmt: skip
        # TRL's lambda is a float32 tensor (torch.where on Python floats): rel 1e-7
        torch.testing.assert_close(-g, phi_trl.expand(1, 3), rtol=1e-7, atol=0)

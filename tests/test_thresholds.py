"""DynamicThresholds: docs/method.md §3 worked values, the §4 mixing, clamping and validation."""

from __future__ import annotations

import math

import pytest
import torch

from flexent.losses import ppo_clip
from flexent.thresholds import DynamicThresholds

# p_old = 0, 0.5, 1 as log-probs (log 0 = -inf).
P = torch.tensor([0.0, 0.5, 1.0])
LOGP = torch.tensor([[-math.inf, math.log(0.5), 0.0]])


def close(t: torch.Tensor, expected: list[float], tol: float = 1e-4) -> None:
    assert t.shape == (1, len(expected))
    for got, want in zip(t[0].tolist(), expected, strict=True):
        assert got == pytest.approx(want, abs=tol), (t, expected)


def test_implicit_worked_values() -> None:
    # docs/method.md §3, alpha_u=-0.25, beta_u=0.5, alpha_l=-0.13, beta_l=0.3:
    # eps_high = 1.5 / (1 + 0.25 p) - 1  -> p=0: 0.5;  p=.5: 1.5/1.125-1 = 0.33333;  p=1: 1.5/1.25-1 = 0.2
    # eps_low = 1 - 0.7 / (1 - 0.13 p)   -> p=0: 0.3;  p=.5: 1-0.7/0.935 = 0.25134; p=1: 1-0.7/0.87 = 0.19540
    eps_low, eps_high = DynamicThresholds()(LOGP, w_up=1.0, w_low=1.0)
    close(eps_high, [0.5, 1 / 3, 0.2])
    close(eps_low, [0.3, 1 - 0.7 / 0.935, 1 - 0.7 / 0.87])
    close(eps_high, [0.5, 0.3333, 0.2], tol=5e-5)
    close(eps_low, [0.3, 0.2513, 0.1954], tol=5e-5)


def test_old_mode_values() -> None:
    # eps_high = -0.25 p + 0.5 -> 0.5, 0.375, 0.25;  eps_low = -0.13 p + 0.3 -> 0.3, 0.235, 0.17
    eps_low, eps_high = DynamicThresholds(mode="old")(LOGP, w_up=1.0, w_low=1.0)
    close(eps_high, [0.5, 0.375, 0.25])
    close(eps_low, [0.3, 0.235, 0.17])


def test_detached_mode_uses_current_probability() -> None:
    # old log-probs are all log 0.9 (would give 0.275 in old mode); the current ones are p = 0, .5, 1
    # -> the old-mode line evaluated at the current p: 0.5, 0.375, 0.25 and 0.3, 0.235, 0.17.
    old = torch.full((1, 3), math.log(0.9))
    current = LOGP.clone().requires_grad_(True)
    th = DynamicThresholds(mode="detached")
    eps_low, eps_high = th(old, w_up=1.0, w_low=1.0, logprobs=current)
    close(eps_high, [0.5, 0.375, 0.25])
    close(eps_low, [0.3, 0.235, 0.17])
    assert not eps_high.requires_grad and not eps_low.requires_grad
    with pytest.raises(ValueError, match="logprobs"):
        th(old, w_up=1.0)


def test_clamp_applies_to_dynamic_values() -> None:
    # old mode, upper = -0.9 p + 0.7: p=0 -> 0.7 clamped to 0.6; p=.5 -> 0.25; p=1 -> -0.2 clamped to 0.05
    th = DynamicThresholds(upper=(-0.9, 0.7), mode="old")
    _, eps_high = th(LOGP, w_up=1.0)
    close(eps_high, [0.6, 0.25, 0.05])


def test_mixing_with_eps_std() -> None:
    # eps_high = w_up * H + (1 - w_up) * 0.2 with w_up = 0.5: p=0: 0.5*0.5+0.1 = 0.35;
    # p=.5: 0.5/3+0.1 = 0.26667; p=1: 0.1+0.1 = 0.2.
    # eps_low with w_low = 0.25: p=0: 0.25*0.3 + 0.75*0.2 = 0.225; p=1: 0.25*0.19540+0.15 = 0.19885
    eps_low, eps_high = DynamicThresholds()(LOGP, w_up=0.5, w_low=0.25)
    close(eps_high, [0.35, 0.5 / 3 + 0.1, 0.2])
    close(eps_low, [0.225, 0.25 * (1 - 0.7 / 0.935) + 0.15, 0.25 * (1 - 0.7 / 0.87) + 0.15])


def test_default_weights_are_upper_only() -> None:
    eps_low, eps_high = DynamicThresholds()(LOGP)  # w_up=1, w_low=0
    close(eps_high, [0.5, 1 / 3, 0.2])
    assert torch.equal(eps_low, torch.full((1, 3), 0.2))


@pytest.mark.parametrize("mode", ["implicit", "old", "detached"])
def test_zero_weights_are_exactly_eps_std(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 9, generator=g) * 5
    old[0, 0] = -math.inf
    old[1, 1] = math.nan  # garbage in a padded position must not matter at w = 0
    cur = -torch.rand(4, 9, generator=g) * 5
    th = DynamicThresholds(eps_std=0.2, mode=mode)
    eps_low, eps_high = th(old, w_up=0.0, w_low=0.0, logprobs=cur)
    expected = torch.full((4, 9), 0.2)
    assert torch.equal(eps_low, expected) and torch.equal(eps_high, expected)


def test_zero_weights_give_the_scalar_loss_exactly() -> None:
    # ppo_clip with the w = 0 per-token tensors == ppo_clip with the scalar eps_std: values and grads.
    g = torch.Generator().manual_seed(1)
    old = -torch.rand(6, 11, generator=g) * 3
    lp1 = (old + 0.5 * torch.randn(6, 11, generator=g)).requires_grad_(True)
    lp2 = lp1.detach().clone().requires_grad_(True)
    adv = torch.randn(6, generator=g)
    mask = torch.rand(6, 11, generator=g) > 0.2
    eps_low, eps_high = DynamicThresholds()(old, w_up=0.0, w_low=0.0)
    a = ppo_clip(lp1, old, adv, mask, eps_low=eps_low, eps_high=eps_high)
    b = ppo_clip(lp2, old, adv, mask, eps_low=0.2, eps_high=0.2)
    assert torch.equal(a.per_token_loss, b.per_token_loss)
    a.per_token_loss.sum().backward()
    b.per_token_loss.sum().backward()
    assert lp1.grad is not None and lp2.grad is not None
    assert torch.equal(lp1.grad, lp2.grad)


def test_fixed_float_ablation() -> None:
    # upper = 0.28 replaces H(p) by the constant clip-higher: 0.28 at w_up=1, 0.5*0.28+0.5*0.2 = 0.24 at 0.5
    th = DynamicThresholds(upper=0.28, lower=0.25)
    eps_low, eps_high = th(LOGP, w_up=1.0, w_low=1.0)
    close(eps_high, [0.28, 0.28, 0.28])
    close(eps_low, [0.25, 0.25, 0.25])
    _, eps_high = th(LOGP, w_up=0.5)
    close(eps_high, [0.24, 0.24, 0.24])


@pytest.mark.parametrize("mode", ["implicit", "old"])
def test_thresholds_decrease_with_probability(mode: str) -> None:
    logp = torch.linspace(0.001, 1.0, 200).log().unsqueeze(0)
    eps_low, eps_high = DynamicThresholds(mode=mode)(logp, w_up=1.0, w_low=1.0)
    assert (eps_high[0, 1:] < eps_high[0, :-1]).all()
    assert (eps_low[0, 1:] < eps_low[0, :-1]).all()


def test_shape_dtype_and_no_gradient() -> None:
    old = torch.full((3, 5), -0.5, dtype=torch.bfloat16, requires_grad=True)
    eps_low, eps_high = DynamicThresholds()(old, w_up=0.3, w_low=0.7)
    assert eps_low.shape == eps_high.shape == (3, 5)
    assert eps_low.dtype == eps_high.dtype == torch.float32
    assert not eps_low.requires_grad and not eps_high.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"upper": (0.1, 0.5)}, "upper[0] (alpha) must be < 0"),
        ({"upper": (0.0, 0.5)}, "got 0.0"),
        ({"lower": (-0.13, 1.3)}, "lower[1] (beta) must lie in (0, 1), got 1.3"),
        ({"lower": (-1.5, 0.3)}, "lower[0] (alpha) must be > -1 in implicit mode, got -1.5"),
        ({"upper": 0.0}, "upper must be > 0, got 0.0"),
        ({"lower": 1.2}, "lower must lie in (0, 1), got 1.2"),
        ({"eps_std": (0.2, -0.1)}, "eps_std[1] (high) must be > 0, got -0.1"),
        ({"upper": (-0.25,)}, "upper must be a float or a pair"),
        ({"upper": (math.nan, 0.5)}, "upper[0] (alpha) must be finite, got nan"),
        ({"eps_std": 1.5}, "eps_std must lie in (0, 1), got 1.5"),
        ({"eps_std": math.nan}, "eps_std must be finite, got nan"),
        ({"eps_clamp": (0.5, 0.1)}, "eps_min <= eps_max, got (0.5, 0.1)"),
        ({"eps_clamp": (0.0, 0.6)}, "eps_clamp[0] (eps_min) must lie in (0, 1), got 0.0"),
        ({"mode": "current"}, "mode must be one of ['implicit', 'old', 'detached'], got 'current'"),
    ],
)
def test_invalid_parameters_name_the_problem(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        DynamicThresholds(**kwargs)
    assert needle in str(info.value)


def test_upper_side_widths_may_exceed_one() -> None:
    """1 + eps_high is a valid ratio bound for any eps_high > 0 (verl's clip_ratio_high=100
    disables the upper clip); only the lower side needs eps < 1 (1 - eps_low > 0)."""
    th = DynamicThresholds(upper=1.5, eps_std=(0.2, 100.0), eps_clamp=(0.05, 3.0))
    old = torch.log(torch.tensor([[0.5]]))
    assert th(old, w_up=1.0)[1].item() == 1.5
    assert th(old, w_up=0.0)[1].item() == 100.0
    assert th(old, w_up=0.5)[1].item() == pytest.approx(0.5 * 1.5 + 0.5 * 100.0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"w_up": 1.5}, "w_up must lie in [0, 1], got 1.5"),
        ({"w_low": -0.1}, "w_low must lie in [0, 1], got -0.1"),
        ({"w_low": math.nan}, "w_low must be finite, got nan"),
        ({"w_up": "1"}, "w_up must be a number, got '1'"),
    ],
)
def test_invalid_weights_name_the_problem(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        DynamicThresholds()(LOGP, **kwargs)
    assert needle in str(info.value)


def test_dict_round_trip() -> None:
    th = DynamicThresholds(upper=0.28, lower=(-0.1, 0.25), eps_std=0.15, mode="old")
    d = th.to_dict()
    assert d == {
        "upper": 0.28,
        "lower": [-0.1, 0.25],
        "eps_std": 0.15,
        "eps_clamp": [0.05, 0.6],
        "mode": "old",
    }
    assert DynamicThresholds.from_dict(d) == th
    assert DynamicThresholds.from_dict({}) == DynamicThresholds()
    with pytest.raises(ValueError, match=r"unknown thresholds keys \['upper_slope'\]"):
        DynamicThresholds.from_dict({"upper_slope": -0.2})
    with pytest.raises(ValueError, match="upper"):
        DynamicThresholds.from_dict({"upper": [0.3, 0.5]})


@pytest.mark.parametrize("mode", ["implicit", "old", "detached"])
def test_inputs_are_not_modified(mode: str) -> None:
    # the thresholds are computed with in-place steps on internal buffers only
    old = torch.tensor([[-0.1, -1.0, -3.0]])
    cur = torch.tensor([[-0.2, -0.5, -2.0]])
    old_copy, cur_copy = old.clone(), cur.clone()
    DynamicThresholds(mode=mode)(old, w_up=0.5, w_low=1.0, logprobs=cur)
    assert torch.equal(old, old_copy) and torch.equal(cur, cur_copy)


def test_eps_std_pair_gives_an_asymmetric_static_clip():
    # w = 0 on both sides selects eps_std alone: (low, high) = (0.2, 0.28) everywhere, whatever p.
    th = DynamicThresholds(eps_std=(0.2, 0.28))
    old = torch.log(torch.tensor([[0.01, 0.5, 1.0]]))
    eps_low, eps_high = th(old, w_up=0.0, w_low=0.0)
    # (float32 tensors: compare with the float32 roundings of 0.2 and 0.28)
    assert torch.equal(eps_low, torch.full((1, 3), 0.2))
    assert torch.equal(eps_high, torch.full((1, 3), 0.28))
    # w_up = 0.5 at p_old = 1 (implicit): 0.5 * 0.2 (the worked value) + 0.5 * 0.28 = 0.24; the
    # lower side still mixes with its own std, 0.2.
    eps_low, eps_high = th(torch.zeros(1, 1), w_up=0.5, w_low=0.0)
    assert eps_high.item() == pytest.approx(0.24, abs=1e-6)
    assert eps_low.item() == pytest.approx(0.2, abs=1e-7)
    assert DynamicThresholds.from_dict(th.to_dict()) == th


@pytest.mark.parametrize(
    ("eps_std", "name"),
    [((0.2,), "eps_std"), ((0.2, 0.0), r"eps_std\[1\] \(high\)"), ((0.0, 0.2), r"eps_std\[0\]")],
)
def test_eps_std_pair_validation(eps_std, name):
    with pytest.raises(ValueError, match=name):
        DynamicThresholds(eps_std=eps_std)

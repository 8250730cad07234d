"""Threshold families (flexent.thresholds.families): hand-derived values at landmark
probabilities, the §4 mixing, detached mode, validation, round trips, and verl's dppo_tv mask."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from flexent.losses import out_of_band, ppo_clip, prepare
from flexent.thresholds import (
    THRESHOLD_FAMILIES,
    DCPOThreshold,
    DynamicThresholds,
    FixedThreshold,
    LinearThreshold,
    ThresholdFamily,
    TVThreshold,
    register_threshold_family,
)

INF = math.inf


def logp(*probs: float) -> torch.Tensor:
    """[1, n] log-probs of the given probabilities (log 0 = -inf)."""
    return torch.tensor([probs], dtype=torch.float64).log()


def both(th: DynamicThresholds, old: torch.Tensor, **kw) -> tuple[list[float], list[float]]:
    eps_low, eps_high = th(old, w_up=1.0, w_low=1.0, **kw)
    return eps_low[0].tolist(), eps_high[0].tolist()


def tv(delta: float, clamp: bool = False) -> dict:
    return {"family": "tv", "delta": delta, "clamp": clamp}


# ---------------------------------------------------------------- landmark values


def test_tv_landmarks_unclamped() -> None:
    # eps = delta / q on both sides, delta = 0.2:
    # q = 1 -> 0.2;  q = 0.5 -> 0.4;  q = 0.1 -> 2.0;  q = 0 -> inf (no clip).
    th = DynamicThresholds(upper=tv(0.2), lower=tv(0.2))
    eps_low, eps_high = both(th, logp(1.0, 0.5, 0.1, 0.0))
    assert eps_high == pytest.approx([0.2, 0.4, 2.0, INF])
    assert eps_low == pytest.approx([0.2, 0.4, 2.0, INF])
    # lower ratio bound 1 - eps_low: 0.8, 0.6, then -1.0 and -inf: no lower clip from q < delta on.
    assert [1.0 - e for e in eps_low] == pytest.approx([0.8, 0.6, -1.0, -INF])


def test_tv_default_clamp_and_delta() -> None:
    # clamp true (the default) to eps_clamp (0.05, 0.6): q = 0.1 -> 2.0 -> 0.6; q = 0 -> inf -> 0.6.
    # default delta 0.15: q = 1 -> 0.15; q = 0.5 -> 0.3.
    th = DynamicThresholds(upper={"family": "tv"}, lower={"family": "tv", "delta": 0.2})
    eps_low, eps_high = both(th, logp(1.0, 0.5, 0.1, 0.0))
    assert eps_high == pytest.approx([0.15, 0.3, 0.6, 0.6])
    assert eps_low == pytest.approx([0.2, 0.4, 0.6, 0.6])


def test_dcpo_upper_landmarks() -> None:
    # eps_high = min((1 + sqrt(1 + 4 eps / q)) / 2, max(C, 10)) - 1, eps = 0.28, C = 10:
    # q = 1:     sqrt(1 + 1.12) = sqrt(2.12) = 1.4560220 -> high 1.2280110 -> 0.2280110
    # q = 0.5:   sqrt(1 + 2.24) = sqrt(3.24) = 1.8       -> high 1.4       -> 0.4
    # q = 0.1:   sqrt(1 + 11.2) = sqrt(12.2) = 3.4928498 -> high 2.2464249 -> 1.2464249
    # q = 0.001: sqrt(1121) = 33.48 -> high 17.24 > 10   -> capped at 10   -> 9
    # q = 0:     inf                                      -> capped         -> 9
    th = DynamicThresholds(upper={"family": "dcpo", "clamp": False})
    _, eps_high = both(th, logp(1.0, 0.5, 0.1, 0.001, 0.0))
    assert eps_high == pytest.approx([(1 + math.sqrt(2.12)) / 2 - 1, 0.4, 1.2464249, 9.0, 9.0])
    assert eps_high[0] == pytest.approx(0.2280110, abs=1e-7)
    # C = 20 caps at 19; C = 3 still caps at max(3, 10) = 10 (as DCPO's code).
    for c, cap in ((20.0, 19.0), (3.0, 9.0)):
        th = DynamicThresholds(upper={"family": "dcpo", "clip_ratio_c": c, "clamp": False})
        assert both(th, logp(0.0))[1] == [cap]


def test_dcpo_lower_landmarks() -> None:
    # eps_low = 1 - (1 + sqrt(max(0, 1 - 4 eps / q))) / 2, eps = 0.2:
    # q = 1:   sqrt(1 - 0.8) = sqrt(0.2) = 0.4472136 -> low 0.7236068 -> 0.2763932
    # q = 0.8: 1 - 1.0 = 0 -> low 0.5 -> 0.5;  q = 0.5: 1 - 1.6 < 0 -> 0 -> 0.5;  q = 0: 0.5
    th = DynamicThresholds(lower={"family": "dcpo", "clamp": False})
    eps_low, _ = both(th, logp(1.0, 0.8, 0.5, 0.0))
    assert eps_low == pytest.approx([(1 - math.sqrt(0.2)) / 2, 0.5, 0.5, 0.5])
    assert eps_low[0] == pytest.approx(0.2763932, abs=1e-7)
    # eps = 0.1875 at q = 1: sqrt(1 - 0.75) = 0.5 -> low 0.75 -> eps_low 0.25 exactly.
    th = DynamicThresholds(lower={"family": "dcpo", "eps": 0.1875})
    assert both(th, logp(1.0))[0] == [0.25]


def test_dcpo_is_inside_the_default_clamp_at_high_probability() -> None:
    # clamp true (default): eps_high at q = 0.001 is 9 -> 0.6; q = 0.5 -> 0.4 stays; eps_low
    # lies in [0.276, 0.5], inside (0.05, 0.6), so the clamp never changes it.
    th = DynamicThresholds(upper={"family": "dcpo"}, lower={"family": "dcpo"})
    eps_low, eps_high = both(th, logp(0.5, 0.001))
    assert eps_high == pytest.approx([0.4, 0.6])
    assert eps_low == pytest.approx([0.5, 0.5])


def test_linear_mapping_form_is_the_pair() -> None:
    pair = DynamicThresholds(upper=(-0.25, 0.5), lower=(-0.13, 0.3))
    mapping = DynamicThresholds(
        upper={"family": "linear", "alpha": -0.25, "beta": 0.5},
        lower={"family": "linear"},  # this side's defaults: (-0.13, 0.3)
    )
    assert pair == mapping == DynamicThresholds()
    old = logp(0.0, 0.5, 1.0)
    assert both(pair, old) == both(mapping, old)


def test_linear_clamp_false() -> None:
    # old mode, upper 0.9 - 0.25 p: p = 0 -> 0.9 (clamped: 0.6), p = 1 -> 0.65 (clamped: 0.6).
    old = logp(0.0, 1.0)
    clamped = DynamicThresholds(upper=(-0.25, 0.9), mode="old")
    free = DynamicThresholds(upper={"family": "linear", "alpha": -0.25, "beta": 0.9,
                                    "clamp": False}, mode="old")  # fmt: skip
    assert both(clamped, old)[1] == pytest.approx([0.6, 0.6])
    assert both(free, old)[1] == pytest.approx([0.9, 0.65])


def test_fixed_mapping_form_is_the_float() -> None:
    assert DynamicThresholds(upper={"family": "fixed", "eps": 0.28}) == DynamicThresholds(
        upper=0.28
    )
    th = DynamicThresholds(upper=FixedThreshold(0.28), lower={"family": "fixed", "eps": 0.25})
    assert both(th, logp(0.1, 0.9)) == ([0.25, 0.25], [0.28, 0.28])


def test_implicit_and_old_agree_for_tv_and_dcpo() -> None:
    old = torch.rand(3, 17, generator=torch.Generator().manual_seed(0)).log()
    for upper, lower in (({"family": "tv"}, {"family": "tv"}), ({"family": "dcpo"},) * 2):
        a = DynamicThresholds(upper=upper, lower=lower, mode="implicit")(old, 1.0, 1.0)
        b = DynamicThresholds(upper=upper, lower=lower, mode="old")(old, 1.0, 1.0)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_families_decrease_with_probability() -> None:
    q = torch.linspace(0.01, 1.0, 100, dtype=torch.float64).log().unsqueeze(0)
    for spec in (tv(0.2), {"family": "dcpo", "clamp": False}):
        eps_low, eps_high = DynamicThresholds(upper=spec, lower=spec)(q, 1.0, 1.0)
        assert (eps_high[0, 1:] < eps_high[0, :-1]).all()
        assert (eps_low[0, 1:] <= eps_low[0, :-1]).all()  # dcpo's lower is flat (0.5) for q <= 0.8


# ---------------------------------------------------------------- mixing, modes, padding

FAMILIES = {
    "linear": ((-0.25, 0.5), (-0.13, 0.3)),
    "tv": (tv(0.2), tv(0.2)),
    "tv_clamped": ({"family": "tv"}, {"family": "tv"}),
    "dcpo": ({"family": "dcpo", "clamp": False}, {"family": "dcpo"}),
    "fixed": (0.28, 0.25),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mixing_with_eps_std(name: str) -> None:
    # eps = w * family + (1 - w) * eps_std: w = 0 exactly eps_std, w = 1 exactly the family.
    upper, lower = FAMILIES[name]
    old = torch.tensor([[0.05, 0.3, 0.7, 1.0]], dtype=torch.float64).log()
    th = DynamicThresholds(upper=upper, lower=lower, eps_std=(0.2, 0.28))
    fam_low, fam_high = th(old, w_up=1.0, w_low=1.0)
    eps_low, eps_high = th(old, w_up=0.0, w_low=0.0)
    assert torch.equal(eps_high, torch.full_like(old, 0.28))
    assert torch.equal(eps_low, torch.full_like(old, 0.2))
    eps_low, eps_high = th(old, w_up=0.5, w_low=0.5)
    torch.testing.assert_close(eps_high, 0.5 * fam_high + 0.5 * 0.28)
    torch.testing.assert_close(eps_low, 0.5 * fam_low + 0.5 * 0.2)


@pytest.mark.parametrize("mode", ["implicit", "old", "detached"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_nan_padding_does_not_matter_at_zero_weight(name: str, mode: str) -> None:
    upper, lower = FAMILIES[name]
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 9, generator=g) * 5
    old[0, 0], old[1, 1], old[2, 2] = math.nan, -math.inf, 3.0  # garbage in padded positions
    cur = old.flip(1)
    th = DynamicThresholds(upper=upper, lower=lower, mode=mode)
    eps_low, eps_high = th(old, w_up=0.0, w_low=0.0, logprobs=cur)
    assert torch.equal(eps_low, torch.full((4, 9), 0.2))
    assert torch.equal(eps_high, torch.full((4, 9), 0.2))


def test_detached_mode_evaluates_the_current_probability() -> None:
    # old p = 0.9 everywhere; current p = 0.5, 1: tv 0.2 / p -> 0.4, 0.2; dcpo upper at p = 1
    # -> 0.2280110 (as above), at p = 0.5 -> 0.4; dcpo lower at 0.5 -> 0.5, at 1 -> 0.2763932.
    old = torch.full((1, 2), math.log(0.9), dtype=torch.float64)
    cur = logp(0.5, 1.0).requires_grad_(True)
    th = DynamicThresholds(upper=tv(0.2), lower=tv(0.2), mode="detached")
    eps_low, eps_high = both(th, old, logprobs=cur)
    assert eps_high == pytest.approx([0.4, 0.2]) and eps_low == pytest.approx([0.4, 0.2])
    th = DynamicThresholds(upper={"family": "dcpo"}, lower={"family": "dcpo"}, mode="detached")
    eps_low, eps_high = both(th, old, logprobs=cur)
    assert eps_high == pytest.approx([0.4, 0.2280110], abs=1e-7)
    assert eps_low == pytest.approx([0.5, 0.2763932], abs=1e-7)


@pytest.mark.parametrize("mode", ["implicit", "old", "detached"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_inputs_are_not_modified_and_outputs_are_detached(name: str, mode: str) -> None:
    upper, lower = FAMILIES[name]
    old = torch.tensor([[-0.1, -1.0, -3.0]], dtype=torch.bfloat16, requires_grad=True)
    cur = torch.tensor([[-0.2, -0.5, -2.0]], requires_grad=True)
    old_copy, cur_copy = old.detach().clone(), cur.detach().clone()
    th = DynamicThresholds(upper=upper, lower=lower, mode=mode)
    eps_low, eps_high = th(old, w_up=0.5, w_low=1.0, logprobs=cur)
    assert torch.equal(old, old_copy) and torch.equal(cur, cur_copy)
    assert eps_low.dtype == eps_high.dtype == torch.float32
    assert not eps_low.requires_grad and not eps_high.requires_grad


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"upper": {"family": "tvx"}},
         "upper.family: unknown threshold family 'tvx'; valid: ['dcpo', 'fixed', 'linear', 'tv']"),
        ({"lower": {"family": "tv", "dleta": 0.2}},
         "lower: unknown parameter(s) ['dleta'] of family 'tv'; valid: ['delta', 'clamp']"),
        ({"upper": {"delta": 0.2}}, "upper: a mapping needs the key 'family'"),
        ({"upper": {"family": "tv", "delta": 0.0}}, "upper.delta must be > 0, got 0.0"),
        ({"upper": {"family": "tv", "delta": "0.2"}}, "upper.delta must be a number, got '0.2'"),
        ({"upper": {"family": "tv", "clamp": "no"}}, "upper.clamp must be true or false, got 'no'"),
        ({"lower": {"family": "dcpo", "clip_ratio_c": 10}},
         "lower.clip_ratio_c: DCPO caps the upper bound only"),
        ({"upper": {"family": "dcpo", "clip_ratio_c": 1.0}},
         "upper.clip_ratio_c must be > 1, got 1.0"),
        ({"upper": {"family": "dcpo", "eps": -0.1}}, "upper.eps must be > 0, got -0.1"),
        ({"upper": {"family": "fixed"}}, "upper.eps is required by family 'fixed'"),
        ({"lower": {"family": "fixed", "eps": 1.5}}, "lower.eps must lie in (0, 1), got 1.5"),
        ({"lower": {"family": "linear", "beta": 1.3}}, "lower.beta must lie in (0, 1), got 1.3"),
        ({"upper": {"family": "linear", "alpha": 0.1}}, "upper.alpha must be < 0"),
        ({"upper": {"family": "linear", "alpha": -0.9, "beta": 0.7, "clamp": False}},
         "upper: family 'linear' with clamp false goes negative on p in [0, 1]"),
        ({"upper": TVThreshold(delta=math.nan)}, "upper.delta must be finite, got nan"),
        ({"upper": "tv"}, "upper must be a float or a pair (alpha, beta), or a mapping"),
    ],
)  # fmt: skip
def test_invalid_families_name_the_key(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        DynamicThresholds(**kwargs)
    assert needle in str(info.value)


def test_registry_adds_a_family_in_one_class() -> None:
    from dataclasses import dataclass

    from flexent.thresholds.families import check_bool, check_positive

    @register_threshold_family("test_inv_sqrt")
    @dataclass(frozen=True)
    class InvSqrt(ThresholdFamily):
        c: float | None = None
        clamp: bool = True

        def checked(self, key, *, upper, mode):
            c = check_positive(key("c"), 0.2 if self.c is None else self.c)
            return InvSqrt(c, check_bool(key("clamp"), self.clamp))

        def __call__(self, q, *, upper, mode, reuse):
            return (q.rsqrt_() if reuse else q.rsqrt()).mul_(self.c)

    try:
        # c / sqrt(q), c = 0.1: q = 1 -> 0.1; q = 0.25 -> 0.2; q = 0.01 -> 1.0 (clamped: 0.6).
        th = DynamicThresholds(upper={"family": "test_inv_sqrt", "c": 0.1}, lower=InvSqrt())
        assert both(th, logp(1.0, 0.25, 0.01))[1] == pytest.approx([0.1, 0.2, 0.6])
        assert th.to_dict()["upper"] == {"family": "test_inv_sqrt", "c": 0.1, "clamp": True}
        assert DynamicThresholds.from_dict(th.to_dict()) == th
        with pytest.raises(ValueError, match="already registered"):
            register_threshold_family("test_inv_sqrt")(InvSqrt)
    finally:
        THRESHOLD_FAMILIES.pop("test_inv_sqrt")
    with pytest.raises(TypeError, match="ThresholdFamily dataclass"):
        register_threshold_family("test_not_a_family")(dict)
    assert "test_not_a_family" not in THRESHOLD_FAMILIES


# ---------------------------------------------------------------- round trips

FORMS = [
    DynamicThresholds(),
    DynamicThresholds(upper=0.28, lower=(-0.1, 0.25), eps_std=0.15, mode="old"),
    DynamicThresholds(upper=tv(0.2), lower={"family": "tv", "delta": 0.1}, eps_std=(0.2, 0.28)),
    DynamicThresholds(upper={"family": "dcpo", "clip_ratio_c": 20}, lower={"family": "dcpo"}),
    DynamicThresholds(upper={"family": "linear", "clamp": False}, lower=0.2, mode="detached"),
]


@pytest.mark.parametrize("th", FORMS, ids=range(len(FORMS)))
def test_dict_and_yaml_round_trip(th: DynamicThresholds) -> None:
    d = th.to_dict()
    assert DynamicThresholds.from_dict(d) == th
    assert DynamicThresholds.from_dict(yaml.safe_load(yaml.safe_dump(d))) == th


def test_to_dict_writes_each_side_in_its_shortest_form() -> None:
    assert [th.to_dict()["upper"] for th in FORMS] == [
        [-0.25, 0.5],
        0.28,
        {"family": "tv", "delta": 0.2, "clamp": False},
        {"family": "dcpo", "eps": 0.28, "clip_ratio_c": 20.0, "clamp": True},
        {"family": "linear", "alpha": -0.25, "beta": 0.5, "clamp": False},
    ]
    assert FORMS[3].to_dict()["lower"] == {"family": "dcpo", "eps": 0.2, "clamp": True}


def test_stored_sides_keep_their_historical_form() -> None:
    # `upper` / `lower` hold the shortest form (a pair as a tuple, a float), else the family;
    # family() always gives the family.
    assert (FORMS[0].upper, FORMS[1].upper) == ((-0.25, 0.5), 0.28)
    assert FORMS[0].family(upper=True) == LinearThreshold(-0.25, 0.5)
    assert FORMS[1].family(upper=True) == FixedThreshold(0.28)
    assert FORMS[3].upper == FORMS[3].family(upper=True) == DCPOThreshold(0.28, 20.0)
    assert DynamicThresholds(upper=LinearThreshold()).upper == (-0.25, 0.5)


def test_flexent_config_accepts_every_form(tmp_path) -> None:
    from flexent.config import entropy_control, load_config

    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {path: /m}\ndata: {source: x}\nreward: {name: math}\n"
        "entropy_control:\n  thresholds:\n"
        "    upper: {family: tv, delta: 0.2, clamp: false}\n"
        "    lower: {family: linear, alpha: -0.13, beta: 0.3}\n"
    )
    th = entropy_control(load_config(path)).thresholds
    assert th == DynamicThresholds(upper=tv(0.2), lower=(-0.13, 0.3))
    key = "entropy_control.thresholds"
    cases = [
        # a mapping that names its family replaces the side (no tv `delta` left over) ...
        ([f"{key}.upper={{family: dcpo, eps: 0.28, clip_ratio_c: 10}}"], "upper", DCPOThreshold(0.28, 10.0)),
        # ... a pair or a float replaces it too ...
        ([f"{key}.upper=[-0.2,0.4]"], "upper", LinearThreshold(-0.2, 0.4)),
        ([f"{key}.upper=0.28"], "upper", FixedThreshold(0.28)),
        # ... and a mapping without `family` updates the side's parameters.
        ([f"{key}.upper.delta=0.3"], "upper", TVThreshold(0.3, clamp=False)),
        ([f"{key}.lower.beta=0.25"], "lower", LinearThreshold(-0.13, 0.25)),
        ([f"{key}.lower=0.2", f"{key}.lower.eps=0.25"], "lower", FixedThreshold(0.25)),
    ]  # fmt: skip
    for overrides, side, expected in cases:
        th = entropy_control(load_config(path, overrides)).thresholds
        assert th.family(upper=side == "upper") == expected, overrides


def test_flexent_config_names_the_bad_key(tmp_path) -> None:
    from flexent.config import ConfigError, load_config

    base = ["model.path=/m", "data.source=x", "reward.name=math"]
    bad = "entropy_control.thresholds.upper={family: tv, delta: 0.2, clip: 3}"
    with pytest.raises(ConfigError, match=r"thresholds.*upper: unknown parameter\(s\) \['clip'\]"):
        load_config(None, [*base, bad])


# ---------------------------------------------------------------- verl dppo_tv


def _tv_batch(seed: int, B: int = 8, T: int = 64):
    """q = pi_old in (1e-4, 1) plus a few 1e-8; pi = q + U(-0.5, 0.5), kept in [1e-6, 1], so
    pi - q crosses +-delta often and |log r| < 20 (no ratio clamp); A ~ N(0, 1) per token."""
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(B, T, generator=g, dtype=torch.float64) * (1 - 1e-4) + 1e-4
    q[:, :3] = 1e-8  # q -> 0: eps = delta / q ~ 2e7
    p = (q + torch.rand(B, T, generator=g, dtype=torch.float64) - 0.5).clamp(1e-6, 1.0)
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return q.log(), p.log(), adv, mask


@pytest.mark.parametrize(("delta_low", "delta_high"), [(0.2, 0.2), (0.15, 0.3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tv_reproduces_verl_dppo_tv(v, delta_low: float, delta_high: float, seed: int) -> None:
    """w_up = w_low = 1 with tv (clamp false) on both sides: flexent's in-band mask is verl's
    dppo_tv valid mask, read off verl's own loss (its gradient, -A min(r, C) on valid tokens,
    is 0 exactly on the others), and ppo_clip's gradient is dppo_tv's (r < C here)."""
    pytest.importorskip("verl")
    from verl_support import actor_config

    old, new, adv, mask = _tv_batch(seed)
    cfg = actor_config(
        v, policy_loss=v.PolicyLossConfig(loss_mode="dppo_tv"), clip_ratio_low=delta_low,
        clip_ratio_high=delta_high, clip_ratio_c=1e9,
    )  # fmt: skip
    lp_verl = new.clone().requires_grad_(True)
    fn = v.core_algos.get_policy_loss_fn("dppo_tv")
    loss, metrics = fn(old, lp_verl, adv, mask, loss_agg_mode="token-sum", config=cfg)
    loss.backward()
    assert lp_verl.grad is not None
    verl_valid = mask & (lp_verl.grad != 0)

    th = DynamicThresholds(upper=tv(delta_high), lower=tv(delta_low))
    eps_low, eps_high = th(old, w_up=1.0, w_low=1.0)
    prep = prepare(new, old, adv, mask, eps_low=eps_low, eps_high=eps_high)
    high, low = out_of_band(prep, prep.ratio)
    in_band = mask & ~high & ~low
    assert torch.equal(in_band, verl_valid)
    assert high.sum() > 10 and low.sum() > 10 and in_band.sum() > 100  # both sides exercised
    n_out = (mask & ~in_band).sum().item()
    assert metrics["actor/pg_clipfrac"] == pytest.approx(n_out / mask.sum().item())

    lp = new.clone().requires_grad_(True)
    out = ppo_clip(lp, old, adv, mask, eps_low=eps_low, eps_high=eps_high)
    out.per_token_loss.sum().backward()
    torch.testing.assert_close(lp.grad, lp_verl.grad, rtol=1e-12, atol=1e-12)

"""Entropy-control strategies: landmark weights, od hysteresis, target control, state round-trip."""

from __future__ import annotations

import json
import math

import pytest

from flexent.strategies import (
    did_weights,
    get_strategy,
    id_weights,
    list_strategies,
    pi_step,
)

# lambda_k = 1 - k/(rho T) for k <= rho T, -(k - rho T)/((1 - rho) T) after (docs/method.md §4);
# id: (lambda, 0) then (0, 1 + lambda); did: (1 - lambda, 0) then (1, 1 + lambda).
# rho = 0.5, T = 400: boundary 200.
#   k=0:   lambda = 1                     -> id (1, 0)        did (0, 0)
#   k=100: lambda = 1 - 100/200 = 0.5     -> id (0.5, 0)      did (0.5, 0)
#   k=200: lambda = 0                     -> id (0, 0)        did (1, 0)
#   k=201: lambda = -1/200 = -0.005       -> id (0, 0.995)    did (1, 0.995)
#   k=400: lambda = -200/200 = -1         -> id (0, 0)        did (1, 0)
# rho = 0.3, T = 400: boundary 120, phase II length 280.
#   k=0:   lambda = 1                     -> id (1, 0)        did (0, 0)
#   k=60:  lambda = 1 - 60/120 = 0.5      -> id (0.5, 0)      did (0.5, 0)
#   k=120: lambda = 0                     -> id (0, 0)        did (1, 0)
#   k=121: lambda = -1/280                -> id (0, 279/280)  did (1, 279/280)
#   k=400: lambda = -280/280 = -1         -> id (0, 0)        did (1, 0)
# rho = 0.3, T = 10: boundary 3 (0.3 * 10 is 3.0000000000000004 in floating point).
#   k=3: lambda = 0 -> id (0, 0), did (1, 0);  k=4: lambda = -1/7 -> id (0, 6/7), did (1, 6/7)
LANDMARKS = [
    (0.5, 400, 0, (1.0, 0.0), (0.0, 0.0)),
    (0.5, 400, 100, (0.5, 0.0), (0.5, 0.0)),
    (0.5, 400, 200, (0.0, 0.0), (1.0, 0.0)),
    (0.5, 400, 201, (0.0, 0.995), (1.0, 0.995)),
    (0.5, 400, 400, (0.0, 0.0), (1.0, 0.0)),
    (0.3, 400, 0, (1.0, 0.0), (0.0, 0.0)),
    (0.3, 400, 60, (0.5, 0.0), (0.5, 0.0)),
    (0.3, 400, 120, (0.0, 0.0), (1.0, 0.0)),
    (0.3, 400, 121, (0.0, 279 / 280), (1.0, 279 / 280)),
    (0.3, 400, 400, (0.0, 0.0), (1.0, 0.0)),
    (0.3, 10, 3, (0.0, 0.0), (1.0, 0.0)),
    (0.3, 10, 4, (0.0, 6 / 7), (1.0, 6 / 7)),
]


@pytest.mark.parametrize(("rho", "T", "k", "id_w", "did_w"), LANDMARKS)
def test_id_did_landmarks(rho, T, k, id_w, did_w):
    assert id_weights(k, T, rho) == pytest.approx(id_w, abs=1e-12)
    assert did_weights(k, T, rho) == pytest.approx(did_w, abs=1e-12)
    for name, expected in (("id", id_w), ("did", did_w)):
        strategy = get_strategy(name, total_steps=T, phase_ratio=rho)
        assert strategy.weights(k) == pytest.approx(expected, abs=1e-12)
        assert strategy.metrics()["control/w_up"] == pytest.approx(expected[0], abs=1e-12)
        assert strategy.metrics()["control/w_low"] == pytest.approx(expected[1], abs=1e-12)


def test_id_did_default_phase_ratio_is_half():
    assert get_strategy("id", total_steps=400).weights(200) == (0.0, 0.0)
    assert get_strategy("did", total_steps=400).weights(200) == (1.0, 0.0)


def test_static_and_dynamic():
    assert get_strategy("static", total_steps=5).weights(3) == (0.0, 0.0)
    assert get_strategy("dynamic", total_steps=5).weights(3) == (1.0, 1.0)


def test_weights_stay_in_unit_interval():
    for name in ("id", "did"):
        for rho in (0.3, 0.4, 0.5, 0.6):
            s = get_strategy(name, total_steps=37, phase_ratio=rho)
            for k in range(38):
                w_up, w_low = s.weights(k)
                assert 0.0 <= w_up <= 1.0 and 0.0 <= w_low <= 1.0


def test_od_scripted_transitions():
    # H_init = 2.0 (measured at step 0), H_min = tau_low = 0.4, T = 100,
    # tau_high(k) = 0.4 + 1.6 (1 - k/100).
    script = [
        (0, 2.0, 0),  # tau_high 2.0: 2.0 not above it, not <= 0.4 -> keep s_init = 0
        (1, 1.0, 0),  # tau_high 1.984: in the band -> keep 0
        (2, 0.4, 1),  # <= tau_low -> boost
        (3, 1.5, 1),  # tau_high 1.952: in the band -> keep 1 (hysteresis)
        (4, 1.96, 0),  # tau_high 1.936: above -> suppress
        (5, 1.0, 0),  # in the band -> keep 0
        (50, 0.3, 1),  # <= 0.4 -> boost
        (60, 1.1, 0),  # tau_high 1.04: above -> suppress
        (70, 0.35, 1),  # boost
        (80, 0.6, 1),  # tau_high 0.72: in the band -> keep 1
        (100, 0.41, 0),  # tau_high 0.4: above -> suppress
    ]
    od = get_strategy("od", total_steps=100)
    for step, entropy, state in script:
        w = od.weights(step, entropy=entropy)
        assert w == ((1.0, 0.0) if state == 1 else (0.0, 1.0)), step
        m = od.metrics()
        assert m["control/state"] == state
        assert m["control/tau_low"] == pytest.approx(0.4)
        assert m["control/tau_high"] == pytest.approx(0.4 + 1.6 * (1 - step / 100))
        assert m["control/h_init"] == 2.0


def test_od_given_h_init_and_ratio():
    # h_init 1.0, h_min_ratio 0.5 -> tau_low 0.5; step 0 entropy 0.45 boosts at once.
    od = get_strategy("od", total_steps=10, h_init=1.0, h_min_ratio=0.5)
    assert od.weights(0, entropy=0.45) == (1.0, 0.0)


def test_feedback_steps_repeat_and_order():
    od = get_strategy("od", total_steps=10)
    od.weights(0, entropy=1.0)
    assert od.weights(1, entropy=0.1) == (1.0, 0.0)
    # a repeated step returns the same weights without a new observation
    assert od.weights(1, entropy=5.0) == (1.0, 0.0)
    with pytest.raises(ValueError, match="before the last step"):
        od.weights(0, entropy=1.0)


def _plant(h, w_up, w_low):
    # Synthetic training: entropy decays by itself, rises with w_up, falls with w_low.
    return h + 0.05 * w_up * (3.0 - h) - 0.05 * w_low * h - 0.005 * h


def test_pi_step_by_hand():
    # e=0.1, I=0: candidate I = 0.1, u = 2*0.1 + 0.5*0.1 = 0.25 (not saturated)
    assert pi_step(0.1, 0.0, kp=2.0, ki=0.5) == pytest.approx((0.25, 0.1))
    # e=0.8: raw = 1.6 + 0.4 = 2.0 > 1 with e > 0 -> keep I = 0, u = clip(1.6) = 1
    assert pi_step(0.8, 0.0, kp=2.0, ki=0.5) == pytest.approx((1.0, 0.0))
    # saturated high but the error turned negative: integrate (unwinds)
    assert pi_step(-0.1, 4.0, kp=2.0, ki=0.5) == pytest.approx((1.0, 3.9))
    assert pi_step(-0.8, 0.0, kp=2.0, ki=0.5) == pytest.approx((-1.0, 0.0))


def test_target_direction_and_tracking_error_shrinks():
    T = 300
    ctrl = get_strategy("target", total_steps=T, target=1.5, h_init=1.0)
    h, errors = 1.0, []
    for k in range(T + 1):
        w_up, w_low = ctrl.weights(k, entropy=h)
        if h < 1.5 - 1e-3:  # below target: raise entropy through w_up only
            assert w_up > 0.0 and w_low == 0.0
        assert ctrl.metrics()["control/target"] == 1.5
        errors.append(abs(h - 1.5))
        h = _plant(h, w_up, w_low)
    early, late = sum(errors[:30]) / 30, sum(errors[-30:]) / 30
    assert late < 0.1 * early
    assert ctrl.metrics()["control/tracking_error"] == pytest.approx(sum(errors) / len(errors))

    # above target: the controller pushes entropy down through w_low only
    down = get_strategy("target", total_steps=T, target=0.5)
    down.weights(0, entropy=2.0)  # h_init = 2.0, target 1.0 nats
    w_up, w_low = down.weights(1, entropy=1.8)
    assert w_up == 0.0 and w_low > 0.0
    assert down.metrics()["control/target"] == 1.0


def test_target_presets_and_points():
    s = get_strategy("target", total_steps=100, preset="id", h_init=2.0)
    # id preset: relative points (0, 1.0), (0.5, 1.5), (1, 0.5)
    assert [s.target_at(k) for k in (0, 25, 50, 100)] == pytest.approx([2.0, 2.5, 3.0, 1.0])
    p = get_strategy("target", total_steps=10, points=[[0, 2.0], [1, 1.0]], relative=False)
    p.weights(0, entropy=5.0)
    assert p.target_at(5) == pytest.approx(1.5)


def _run(strategy, entropies, start=0):
    out, states = [], []
    for k in range(start, len(entropies)):
        out.append(strategy.weights(k, entropy=entropies[k]))
        states.append(json.dumps(strategy.state_dict()))
    return out, states


@pytest.mark.parametrize(
    ("name", "params"),
    [("od", {}), ("target", {"preset": "od"}), ("target", {"target": 1.2, "h_init": 1.0})],
)
def test_state_round_trip_resume(name, params):
    T = 60
    # closed-loop entropies from an uninterrupted run, then replayed for the resumed ones
    s, h, entropies = get_strategy(name, total_steps=T, **params), 1.0, []
    for k in range(T + 1):
        entropies.append(h)
        h = _plant(h, *s.weights(k, entropy=h))
    full, states = _run(get_strategy(name, total_steps=T, **params), entropies)
    for j in (0, 1, 17, 42, T - 1):
        resumed = get_strategy(name, total_steps=T, **params)
        resumed.load_state_dict(json.loads(states[j]))
        rest, _ = _run(resumed, entropies, start=j + 1)
        assert rest == full[j + 1 :], j


def test_registry_and_validation():
    assert list_strategies() == [
        "aepo", "did", "dynamic", "id", "od", "repo_r", "static", "target"
    ]  # fmt: skip
    with pytest.raises(
        ValueError, match="valid names: aepo, did, dynamic, id, od, repo_r, static, target"
    ):
        get_strategy("nope", total_steps=10)
    with pytest.raises(ValueError, match=r"unknown parameter.*'rho'"):
        get_strategy("id", total_steps=10, rho=0.5)
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="total_steps"):
            get_strategy("static", total_steps=bad)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="phase_ratio"):
            get_strategy("id", total_steps=10, phase_ratio=bad)
        with pytest.raises(ValueError, match="phase_ratio"):
            id_weights(1, 10, bad)
    s = get_strategy("id", total_steps=10)
    for bad in (-1, 11):
        with pytest.raises(ValueError, match="step"):
            s.weights(bad)
    for bad in (math.nan, -0.1, math.inf):
        with pytest.raises(ValueError, match="entropy"):
            s.weights(1, entropy=bad)
    for name in ("od", "target"):
        with pytest.raises(ValueError, match="needs the step's mean token entropy"):
            get_strategy(name, total_steps=10).weights(0)
    with pytest.raises(ValueError, match="h_init"):
        get_strategy("od", total_steps=10).weights(0, entropy=0.0)
    with pytest.raises(ValueError, match="only one of"):
        get_strategy("target", total_steps=10, target=1.0, preset="id")
    with pytest.raises(ValueError, match="unknown target preset"):
        get_strategy("target", total_steps=10, preset="zigzag")
    with pytest.raises(ValueError, match="increasing"):
        get_strategy("target", total_steps=10, points=[[0.5, 1.0], [0.2, 1.0]])
    with pytest.raises(ValueError, match="not 'od'"):
        get_strategy("od", total_steps=10).load_state_dict({"strategy": "target"})


def test_adaptive_entropy_coef_by_hand():
    """Skywork-OR1 / TRL use_adaptive_entropy: the coefficient applies only at or below the
    target and moves by delta toward more bonus below it, less above, within [min, max]."""
    from flexent.strategies.adaptive import AdaptiveEntropyCoef

    a = AdaptiveEntropyCoef(coef=0.01, target=0.3, delta=0.01, min=0.0, max=0.02)
    # H:        0.2 (below: apply 0.01, c -> 0.02), 0.25 (apply 0.02, c stays 0.02 = max),
    #           0.4 (above: apply 0, c -> 0.01), 0.5 (apply 0, c -> 0.0), 0.6 (apply 0, c = min)
    assert [a.step(h) for h in (0.2, 0.25, 0.4, 0.5, 0.6)] == pytest.approx([0.01, 0.02, 0, 0, 0])
    assert a.coef == 0.0
    b = AdaptiveEntropyCoef()
    b.load_state_dict(a.state_dict())
    assert (b.coef, b.last_applied) == (a.coef, a.last_applied)
    with pytest.raises(ValueError, match=r"min 0\.5 > max 0\.1"):
        AdaptiveEntropyCoef(min=0.5, max=0.1)


def test_entropy_control_builds_the_adaptive_coefficient():
    from flexent.control import EntropyControl

    ec = EntropyControl(entropy_coef=0.01, adaptive_entropy={"target": 0.3, "delta": 0.002})
    a = ec.build_adaptive_entropy()
    assert (a.coef, a.target, a.delta, a.max) == (0.01, 0.3, 0.002, 1.0)
    assert EntropyControl().build_adaptive_entropy() is None
    with pytest.raises(ValueError, match=r"adaptive_entropy: unknown key\(s\) \['tgt'\]"):
        EntropyControl(adaptive_entropy={"tgt": 0.3})
    with pytest.raises(ValueError, match="initial coefficient"):
        EntropyControl(entropy_coef=2.0, adaptive_entropy={"target": 0.3})

"""Group-relative advantage estimators, engine-neutral (torch only), and their registry.

An estimator is a pure function

    fn(rewards, groups, *, scale, eps, **params) -> advantages

with ``rewards`` ``[N]`` (one scalar reward per response; NaN marks a response no reward
function could score), ``groups`` the group size ``G`` (rows ``0..G-1`` are one prompt's
responses, ``G..2G-1`` the next: TRL's layout) or a ``[N]`` integer tensor of group ids (verl's
``uid``, any order, groups of any size), and ``advantages`` ``[N]`` in the rewards' dtype
(float32 or wider). ``scale`` divides by the group's standard deviation plus ``eps``; the engine
adapters set both from the engine's own settings (TRL: ``scale_rewards`` and 1e-4; verl:
``algorithm.norm_adv_by_std_in_grpo`` and 1e-6). The other keyword parameters are the user's
(``entropy_control.advantage.params``), checked by :func:`check_advantage`.

Rules shared by every estimator, as TRL 1.16 computes GRPO advantages
(``GRPOTrainer._generate_and_score_completions``): NaN rewards are left out of their group's
statistics and get advantage 0; the standard deviation is the unbiased one (``torch.std``, TRL's
``nanstd``, verl's ``compute_grpo_outcome_advantage``). A group with fewer than two scorable
rewards gets advantage 0 (TRL's value with ``num_generations=1``: the baseline is the reward
itself); verl's GRPO instead uses baseline 0 and std 1 there (advantage ``r / (1 + eps)``). A
group whose scorable rewards are all equal gets exactly 0 (TRL and verl: ``(r - mean) / eps``,
0 up to the rounding of the mean, which a small eps magnifies; QAE's quantile is exact there).

>>> import torch
>>> r = torch.tensor([1.0, 0.0, 0.0, 0.0,   1.0, 1.0, 1.0, 0.0])
>>> get_advantage("grpo")(r, 4, eps=0.0).tolist()
[1.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -1.5]
>>> get_advantage("qae")(r, 4, k=0.4, eps=0.0).tolist()
[2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

AdvantageFn = Callable[..., Tensor]

_REGISTRY: dict[str, AdvantageFn] = {}
COMMON_PARAMS = ("rewards", "groups", "scale", "eps")
# torch.quantile's methods, plus the empirical (inverse-CDF) quantile: the smallest reward r
# with F(r) >= K, numpy's "inverted_cdf".
INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest", "inverted_cdf")


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator registering an estimator under ``name``; a taken name raises ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"advantage estimator name must be a non-empty string, got {name!r}")

    def decorator(fn: AdvantageFn) -> AdvantageFn:
        if name in _REGISTRY:
            raise ValueError(
                f"advantage estimator {name!r} is already registered (by "
                f"{_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}); choose another name"
            )
        _REGISTRY[name] = fn
        return fn

    return decorator


def get_advantage(name: str) -> AdvantageFn:
    """The estimator registered under ``name``; an unknown name raises ValueError listing the
    valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown advantage estimator {name!r}; valid names: {', '.join(list_advantages())}"
        ) from None


def list_advantages() -> list[str]:
    """Registered estimator names, sorted.

    >>> list_advantages()
    ['grpo', 'qae']
    """
    return sorted(_REGISTRY)


def advantage_param_names(name: str) -> list[str]:
    """The parameters of estimator ``name`` a user may set (all but :data:`COMMON_PARAMS`).

    >>> advantage_param_names("qae")
    ['k', 'interpolation']
    """
    fn = get_advantage(name)
    return [p for p in inspect.signature(fn).parameters if p not in COMMON_PARAMS]


def check_advantage(spec: Any) -> dict[str, Any]:
    """``spec`` (``{name, params}``, the ``entropy_control.advantage`` setting) as a plain dict
    after checking the name, the parameter names and their values (the estimator runs once on
    one group of two rewards); ``{}`` (the engine's own advantages) passes as is. Raises
    ValueError naming the bad key.

    >>> check_advantage({"name": "qae", "params": {"k": 0.4}})
    {'name': 'qae', 'params': {'k': 0.4}}
    >>> check_advantage({"name": "qae", "params": {"K": 0.4}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: advantage estimator 'qae' got unknown parameters ['K']; it accepts ['k', ...]
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"advantage must be a mapping {{name, params}}, got {spec!r}")
    if not spec:
        return {}
    unknown = sorted(set(spec) - {"name", "params"})
    if unknown or "name" not in spec:
        raise ValueError(
            f"advantage takes the keys ['name', 'params'] (name required), got {sorted(spec)}"
        )
    name, params = spec["name"], spec.get("params") or {}
    fn = get_advantage(name)
    if not isinstance(params, Mapping):
        raise ValueError(f"advantage params must be a mapping, got {params!r}")
    accepted = advantage_param_names(name)
    bad = sorted(set(params) - set(accepted))
    if bad:
        raise ValueError(
            f"advantage estimator {name!r} got unknown parameters {bad}; it accepts {accepted}"
        )
    fn(torch.tensor([0.0, 1.0]), 2, **params)  # the values: the estimator's own checks
    return {"name": name, "params": dict(params)}


# ------------------------------------------------------------------ the shared group layout


def group_table(rewards: Tensor, groups: int | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(table, row, col)``: the rewards laid out one group per row, ``table[row[i], col[i]]
    = rewards[i]``, rows of unequal size padded with NaN (responses keep their order inside a
    group). Checks ``rewards`` (1-D; finite or NaN) and ``groups``.

    >>> t, row, col = group_table(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([7, 5, 7]))
    >>> t.tolist(), row.tolist(), col.tolist()
    ([[2.0, nan], [1.0, 3.0]], [1, 0, 1], [0, 0, 1])
    """
    if not isinstance(rewards, Tensor) or rewards.dim() != 1:
        shape = tuple(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"rewards must be a 1-D tensor [N], got {shape}")
    if torch.isinf(rewards).any():
        raise ValueError("rewards must be finite (NaN marks an unscorable response), got inf")
    n = rewards.numel()
    if isinstance(groups, bool) or not isinstance(groups, (int, Tensor)):
        raise ValueError(
            f"groups must be a group size (int) or a [N] tensor of ids, got {groups!r}"
        )
    if isinstance(groups, int):
        if groups < 1 or n % groups:
            raise ValueError(f"group size {groups} must be >= 1 and divide the {n} rewards")
        ids = torch.arange(n, device=rewards.device) // groups
    else:
        if groups.shape != rewards.shape or groups.is_floating_point() or groups.is_complex():
            raise ValueError(
                f"group ids must be an integer tensor of shape {tuple(rewards.shape)}, got "
                f"{groups.dtype} {tuple(groups.shape)}"
            )
        ids = groups.to(rewards.device)
    _, row, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    order = torch.argsort(row, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    col = torch.empty_like(row)
    col[order] = torch.arange(n, device=row.device) - starts[row[order]]
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    width = int(counts.max()) if n else 0
    table = torch.full((counts.numel(), width), math.nan, dtype=dtype, device=rewards.device)
    table[row, col] = rewards.to(dtype)
    return table, row, col


def _relative(
    rewards: Tensor,
    groups: int | Tensor,
    baseline: Callable[[Tensor], Tensor],
    *,
    scale: bool,
    eps: float,
) -> Tensor:
    """``(r - b_g) / (std_g + eps)`` (or ``r - b_g`` without ``scale``) with ``b_g =
    baseline(table)`` per group; 0 for NaN rewards, groups of < 2 scorable rewards and groups
    whose scorable rewards are all equal."""
    if not isinstance(scale, bool):
        raise ValueError(f"scale must be true or false, got {scale!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps >= 0.0):
        raise ValueError(f"eps must be a float >= 0, got {eps!r}")
    table, row, _ = group_table(rewards, groups)
    r = rewards.to(table.dtype)
    if r.numel() == 0:
        return r
    adv = r - baseline(table)[row]
    count = (~torch.isnan(table)).sum(dim=1)
    if scale:
        mean = torch.nanmean(table, dim=1, keepdim=True)
        var = torch.nansum((table - mean) ** 2, dim=1) / (count - 1).clamp(min=1)
        adv = adv / (var.sqrt()[row] + eps)
    high = table.nan_to_num(nan=-math.inf).amax(dim=1)
    low = table.nan_to_num(nan=math.inf).amin(dim=1)
    keep = ((count >= 2) & (high > low))[row] & ~torch.isnan(r)
    return torch.where(keep, adv, torch.zeros_like(adv))


# ------------------------------------------------------------------ the estimators


@register_advantage("grpo")
def grpo(rewards: Tensor, groups: int | Tensor, *, scale: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO's group-relative advantage (DeepSeekMath, arXiv 2402.03300), the group mean as the
    baseline:

        A_i = (r_i - mean_g(r)) / (std_g(r) + eps)      (scale=True)
        A_i =  r_i - mean_g(r)                           (scale=False: Dr. GRPO, arXiv 2503.20783)

    What TRL 1.16 computes with ``scale_rewards="group"`` / ``"none"`` (eps 1e-4) and verl 0.9.1's
    ``compute_grpo_outcome_advantage`` with ``norm_adv_by_std_in_grpo`` (eps 1e-6, this default),
    except verl's rule for a group of one response (module docstring).

    >>> import torch
    >>> grpo(torch.tensor([1.0, 1.0, 0.0, 0.0]), 4, scale=False).tolist()
    [0.5, 0.5, -0.5, -0.5]
    """
    return _relative(rewards, groups, lambda t: torch.nanmean(t, dim=1), scale=scale, eps=eps)


@register_advantage("qae")
def qae(
    rewards: Tensor,
    groups: int | Tensor,
    *,
    k: float = 0.4,
    interpolation: str = "linear",
    scale: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Quantile Advantage Estimation (QAE, arXiv 2509.22611): GRPO with the group's K-quantile
    as the baseline instead of its mean,

        A_i = (r_i - Q_K(r_g)) / (std_g(r) + eps)        (scale=False: r_i - Q_K(r_g))

    as the authors' code computes it (junkangwu/QAE: its README's one-line change to verl's
    ``compute_grpo_outcome_advantage`` in ``verl/trainer/ppo/core_algos.py``, ``id2mean[idx] =
    torch.quantile(scores_tensor, quantile_k)``; everything else is verl's GRPO, so the std
    scaling follows ``norm_adv_by_std_in_grpo``, true by default). ``k`` defaults to 0.4, the authors' recommended value (their README; 0.6 against
    early entropy collapse).

    With binary rewards and success rate p, the quantile is 0 on hard groups (reinforce only
    the successes) and 1 on easy ones (penalise only the failures): the two-regime gate of the
    paper, whose boundary p <= 1 - K holds exactly for the empirical quantile
    (``interpolation="inverted_cdf"``: the smallest reward with F(r) >= K). The reference code
    uses ``torch.quantile``'s default linear interpolation (``"linear"``, this default), which
    gives the boundary group a fractional baseline: with G = 8 and K = 0.4, position 0.4 * 7 =
    2.8, so 3 failures and 5 successes give 0.8 (``inverted_cdf``: 1). ``interpolation`` takes
    any ``torch.quantile`` method or ``"inverted_cdf"``.

    Departure: ``k`` must lie in (0, 1); the reference silently falls back to the mean outside
    it (use ``grpo`` for that).

    >>> import torch
    >>> r = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])   # p = 3/8 <= 1 - K: hard
    >>> qae(r, 8, scale=False).tolist()                               # Q_0.4 = 0
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    >>> r = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])   # p = 5/8 > 1 - K: easy
    >>> [round(a, 4) for a in qae(r, 8, scale=False).tolist()]        # linear: Q_0.4 = 0.8
    [-0.8, -0.8, -0.8, 0.2, 0.2, 0.2, 0.2, 0.2]
    >>> qae(r, 8, scale=False, interpolation="inverted_cdf").tolist()  # empirical: Q_0.4 = 1
    [-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k < 1.0:
        raise ValueError(
            f"k must lie in (0, 1), got {k!r} (the reference code falls back to the mean "
            "baseline outside it: use the 'grpo' estimator for that)"
        )
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}"
        )

    def baseline(table: Tensor) -> Tensor:
        if interpolation != "inverted_cdf":
            return torch.nanquantile(table, float(k), dim=1, interpolation=interpolation)
        count = (~torch.isnan(table)).sum(dim=1, keepdim=True)
        # index ceil(K n) - 1; the 1e-9 keeps K n = 7.000000000000001 (K = 0.7, n = 10) at 7
        idx = torch.ceil(float(k) * count.double() - 1e-9).long().sub(1).clamp(min=0)
        return table.sort(dim=1).values.gather(1, idx).squeeze(1)  # NaN sorts last

    return _relative(rewards, groups, baseline, scale=scale, eps=eps)

"""A flexent advantage estimator (:mod:`flexent.advantages`) in TRL 1.16's ``GRPOTrainer``.

TRL computes the advantages inside ``_generate_and_score_completions``, from the rewards of the
whole generation batch gathered over all processes (``_calculate_rewards``), and returns only
this process's slice of them: the returned dict holds ``advantages`` but no rewards. So the
trainer keeps what ``_calculate_rewards`` returns (``rewards_per_func``, ``[N_all, n_funcs]``)
and, after TRL's ``_generate_and_score_completions``, :func:`recompute_advantages` replaces
``out["advantages"]`` from those rewards, as TRL forms them:

- the reward of a completion is ``nansum_j w_j r_j`` over the reward functions (TRL's
  ``reward_weights``), NaN when every function returned None (TRL's unscorable rows, which get
  advantage 0);
- groups are ``num_generations`` consecutive completions (``num_generations_eval`` in eval);
- std scaling is TRL's ``scale_rewards``: ``"group"`` scales, ``"none"`` does not; eps is TRL's
  1e-4. ``scale_rewards="batch"`` and ``multi_objective_aggregation="normalize_then_sum"``
  have no group-wise counterpart and are refused (:func:`check_trl_advantage_args`).

The completions table (``_logs["advantages"]``) gets the new values, and ``advantage/frac_zero``
(the fraction of completions with advantage exactly 0, QAE's sparsity, arXiv 2509.22611) is
logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from flexent.advantages import check_advantage, get_advantage

TRL_EPS = 1e-4  # TRL 1.16: advantages / (std_rewards + 1e-4)


def check_trl_advantage_args(args: Any, advantage: Mapping[str, Any]) -> None:
    """Raise ValueError when the TRL settings ``args`` (a ``GRPOConfig``, or the trainer: both
    carry ``scale_rewards`` and ``multi_objective_aggregation``) cannot be honoured with a flexent
    estimator ``advantage`` (``{}`` = TRL's own advantages: nothing to check).

    >>> from types import SimpleNamespace as NS
    >>> qae = {"name": "qae", "params": {}}
    >>> check_trl_advantage_args(NS(scale_rewards="group"), qae)
    >>> check_trl_advantage_args(NS(scale_rewards="batch"), qae)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: trainer.scale_rewards='batch' scales by the batch's std; ... 'group' or 'none'
    """
    if not advantage:
        return
    name = advantage["name"]
    given: Any = getattr(args, "scale_rewards", "group")  # GRPOConfig's default
    scale = "group" if given is True else "none" if given is False else given
    if scale not in ("group", "none"):
        raise ValueError(
            f"trainer.scale_rewards={given!r} scales by the batch's std; "
            f"entropy_control.advantage ({name}) scales per group: set trainer.scale_rewards "
            "to 'group' or 'none'"
        )
    aggregation = getattr(args, "multi_objective_aggregation", "sum_then_normalize")
    if aggregation != "sum_then_normalize":
        raise ValueError(
            f"trainer.multi_objective_aggregation={aggregation!r} normalises each reward "
            f"function before the sum; entropy_control.advantage ({name}) reads the weighted "
            "sum of the rewards: set trainer.multi_objective_aggregation='sum_then_normalize'"
        )


def trl_rewards(rewards_per_func: Tensor, reward_weights: Tensor) -> Tensor:
    """TRL's scalar reward per completion: ``nansum_j w_j r_j``, NaN where every function gave
    NaN (TRL's ``unscorable_mask``).

    >>> nan = float("nan")
    >>> per_func = torch.tensor([[1.0, nan], [nan, nan], [0.5, 2.0]])
    >>> trl_rewards(per_func, torch.tensor([1.0, 0.5])).tolist()
    [1.0, nan, 1.5]
    """
    w = reward_weights.to(rewards_per_func.device, rewards_per_func.dtype)
    rewards = (rewards_per_func * w.unsqueeze(0)).nansum(dim=1)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    return torch.where(unscorable, torch.full_like(rewards, float("nan")), rewards)


def recompute_advantages(
    trainer: Any, out: dict[str, Any], rewards_per_func: Tensor, advantage: Mapping[str, Any]
) -> dict[str, Any]:
    """Replace ``out["advantages"]`` (this process's completions) with those of the flexent
    estimator ``advantage`` (``{name, params}``, :func:`flexent.advantages.check_advantage`),
    computed over the whole gathered batch ``rewards_per_func`` (what TRL's
    ``_calculate_rewards`` returned for this ``out``) and sliced as TRL slices. Also rewrites
    the completions table's advantages and logs ``advantage/frac_zero``. Returns ``out``.

    ``trainer`` needs TRL's ``GRPOTrainer`` attributes ``model``, ``num_generations``,
    ``num_generations_eval``, ``scale_rewards``, ``multi_objective_aggregation``,
    ``reward_weights``, ``accelerator.process_index``, ``_metrics`` and ``_logs``.
    """
    spec = check_advantage(advantage)
    if not spec:
        return out
    check_trl_advantage_args(trainer, spec)
    mode = "train" if trainer.model.training else "eval"
    group = trainer.num_generations if mode == "train" else trainer.num_generations_eval
    rewards = trl_rewards(rewards_per_func, trainer.reward_weights)
    n_local = int(out["advantages"].shape[0])
    process = int(trainer.accelerator.process_index)
    if rewards.numel() < (process + 1) * n_local:
        raise ValueError(
            f"rewards_per_func holds {rewards.numel()} completions, fewer than process "
            f"{process}'s slice of {n_local} needs: pass what _calculate_rewards returned for "
            "this generation batch"
        )
    scale = {True: "group", False: "none"}.get(trainer.scale_rewards, trainer.scale_rewards)
    all_adv = get_advantage(spec["name"])(
        rewards, int(group), scale=scale == "group", eps=TRL_EPS, **spec["params"]
    )
    local = all_adv[process * n_local : (process + 1) * n_local]
    out["advantages"] = local.to(out["advantages"].device, out["advantages"].dtype)
    logged = trainer._logs["advantages"]
    for _ in range(min(all_adv.numel(), len(logged))):  # TRL's values for this batch
        logged.pop()
    logged.extend(all_adv.tolist())
    trainer._metrics[mode]["advantage/frac_zero"].append(float((all_adv == 0).float().mean()))
    return out

"""``flexent_qae``: QAE (:func:`flexent.advantages.qae`) in verl 0.9.1's advantage-estimator
registry, registered when this module is imported.

Selected with Hydra overrides (verl's ``algorithm`` section is struct, so new keys need ``+``;
the keys are those of the authors' code, junkangwu/QAE's ``++algorithm.quantile_k=0.4``)::

    algorithm.adv_estimator=flexent_qae
    +algorithm.quantile_k=0.4                 # optional, default 0.4
    +algorithm.quantile_interpolation=linear  # optional: a torch.quantile method or inverted_cdf

verl's ``compute_advantage`` calls an estimator other than ``gae``/``grpo`` with
``token_level_rewards``, ``response_mask``, ``config`` (the ``algorithm`` section) and ``index``
(the batch's ``uid``), not with ``norm_adv_by_std_in_grpo``: the std scaling is read from
``algorithm.norm_adv_by_std_in_grpo`` (true by default), as verl's ``grpo_passk`` does.

Departures from the reference (verl's GRPO with the mean swapped for ``torch.quantile``):
a prompt with a single response gets advantage 0 (verl: ``r / (1 + eps)``, baseline 0 and
std 1); ``quantile_k`` outside (0, 1) is an error (the reference falls back to the mean). In
verl's v1 trainer with multi-session agent loops, ``grpo`` scores each session's final output
only; ``flexent_qae``, like every other registered estimator, groups all rows by ``uid``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from verl.trainer.ppo.core_algos import register_adv_est

from flexent.advantages import check_advantage, qae

NAME = "flexent_qae"
DEFAULT_K = 0.4
DEFAULT_INTERPOLATION = "linear"


def group_ids(index: Any, device: torch.device | str = "cpu") -> Tensor:
    """verl's ``index`` (the ``uid`` of each row: strings, ints, any hashable) as ``[N]`` long
    group ids, numbered in order of first appearance.

    >>> import numpy as np
    >>> group_ids(np.array(["b", "a", "b"], dtype=object)).tolist()
    [0, 1, 0]
    """
    if index is None:
        raise ValueError(
            f"{NAME} needs the batch's prompt ids (verl's non_tensor_batch['uid'], passed as "
            "index); none were given"
        )
    ids: dict[Any, int] = {}
    return torch.tensor(
        [ids.setdefault(u, len(ids)) for u in index], dtype=torch.long, device=device
    )


def qae_params(config: Any) -> dict[str, Any]:
    """``{k, interpolation}`` from verl's ``algorithm`` section (``quantile_k``,
    ``quantile_interpolation``; a missing key or section takes the default), checked; a bad
    value raises ValueError naming the key."""
    get = (lambda key, default: default) if config is None else config.get
    k = get("quantile_k", DEFAULT_K)
    interpolation = get("quantile_interpolation", DEFAULT_INTERPOLATION)
    params = {"k": k, "interpolation": interpolation}
    try:
        check_advantage({"name": "qae", "params": params})
    except ValueError as err:
        raise ValueError(
            f"algorithm.quantile_k={k!r} / algorithm.quantile_interpolation={interpolation!r} "
            f"({NAME}): {err}"
        ) from None
    return params


@register_adv_est(NAME)
def compute_qae_outcome_advantage(
    token_level_rewards: Tensor,
    response_mask: Tensor,
    index: np.ndarray | None = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool | None = None,
    config: Any = None,
) -> tuple[Tensor, Tensor]:
    """QAE outcome advantages, the signature of verl's ``compute_grpo_outcome_advantage``.

    The score of a response is ``token_level_rewards.sum(-1)``; its advantage
    :func:`flexent.advantages.qae` over the responses with the same ``index`` (K from
    ``config.quantile_k``, std scaling from ``norm_adv_by_std_in_grpo``, else
    ``config.norm_adv_by_std_in_grpo``, else true), broadcast over the response tokens and
    multiplied by ``response_mask``. Returns ``(advantages, returns)``, both that ``[bs, T]``
    tensor (as verl's GRPO).
    """
    params = qae_params(config)
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = (
            True if config is None else config.get("norm_adv_by_std_in_grpo", True)
        )
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        ids = group_ids(index, scores.device)
        scalars = qae(scores, ids, scale=bool(norm_adv_by_std_in_grpo), eps=epsilon, **params)
        advantages = scalars.to(scores.dtype).unsqueeze(-1) * response_mask
    return advantages, advantages

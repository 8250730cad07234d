"""flexent's policy losses in verl's registry, and the loss function that delivers the step.

Two pieces, both running inside verl's actor workers:

- :func:`register_all` puts every flexent loss into verl's ``POLICY_LOSS_REGISTRY`` as
  ``flexent_<name>`` with verl's signature ``fn(old_log_prob, log_prob, advantages,
  response_mask, loss_agg_mode, config, rollout_is_weights) -> (loss, metrics)``. The thresholds
  come from ``config.policy_loss`` (a :class:`FlexentPolicyLossConfig`) mixed with the step's
  ``(w_up, w_low)``; reduction is verl's own ``agg_loss`` with ``config.global_batch_info``, so
  every ``loss_agg_mode`` and the data-parallel normalisation behave exactly as verl's losses.
- :class:`FlexentActorLoss` wraps verl's ``ppo_loss``. verl passes no step to a policy loss, so
  the trainer (``trainer.py``) puts ``flexent_step``, ``flexent_w_up``, ``flexent_w_low`` into
  the update batch as non-tensor data; this wrapper reads them from the micro-batch, hands them
  to the registered loss through the config object both share, and clears them afterwards.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric
from verl.workers.utils.losses import no_padding_2_padding, ppo_loss

from flexent.control import StepGenerators, loss_arguments, step_eps
from flexent.control.shaping import shape_advantages
from flexent.diagnostics import region_stats, region_token_weights
from flexent.integrations.verl.config import (
    KEY,
    PREFIX,
    config_warnings,
    section_of,
    std_eps_pair,
    verl_loss_params,
    verl_losses,
)
from flexent.integrations.verl.step import BONUS_KEY, RUNTIME_KEYS, SHAPING_KEY, read_shaping
from flexent.losses import get_policy_loss, high_entropy_mask

_SLOT = "_flexent_runtime"
SYNC_HINT = "run verl with trainer.v1.trainer_mode=flexent_sync (docs/verl.md)"
# metric-key prefixes of a token-weighted mean in transit from the workers to the driver
WEIGHTED_SUM = "actor/flexent/weighted_sum/"
TOKEN_WEIGHT = "actor/flexent/token_weight/"
CALCULATE_ENTROPY_HINT = (
    "verl computes it in the actor update only with "
    "actor_rollout_ref.actor.calculate_entropy=true: set it"
)


def runtime(policy_loss_cfg: Any) -> dict[str, Any]:
    """Per-call values (step, weights, pi_old entropy) attached to the ``policy_loss`` config.

    A plain attribute outside the dataclass fields: verl's frozen configs allow setting a new
    name once, and the dict itself is mutable (as verl's own ``global_batch_info``).
    """
    slot = policy_loss_cfg.__dict__.get(_SLOT)
    if slot is None:
        slot = {}
        object.__setattr__(policy_loss_cfg, _SLOT, slot)
    return slot


def step_weights(config: Any) -> tuple[float, float]:
    """``(w_up, w_low)`` for this call: delivered by the trainer, or constant strategies."""
    rt = runtime(config.policy_loss)
    if "w_up" in rt:
        return float(rt["w_up"]), float(rt["w_low"])
    section = section_of(config)
    if not section.step_free:
        raise RuntimeError(
            f"strategy {section.strategy!r} changes with the training step, but no step reached "
            f"the loss: {SYNC_HINT}"
        )
    cache = section.__dict__
    if "_flexent_step_free_weights" not in cache:  # built once per process
        cache["_flexent_step_free_weights"] = section.build_strategy(total_steps=1).weights(0)
    return cache["_flexent_step_free_weights"]  # type: ignore[no-any-return]


def thresholds_for(
    config: Any, old_log_prob: torch.Tensor, log_prob: torch.Tensor
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """``(eps_low, eps_high)`` ``[B, T]`` (or floats where the weight is 0)."""
    w_up, w_low = step_weights(config)
    thresholds = section_of(config).control(eps_std=std_eps_pair(config)).thresholds
    return step_eps(thresholds, old_log_prob, w_up=w_up, w_low=w_low, logprobs=log_prob)


def _loss_params(name: str, config: Any, device: torch.device) -> dict[str, Any]:
    """verl's parameters of loss ``name`` plus the trait-supplied ones: this worker's generator
    of the step (re-seeded from (seed, rank, step): a resumed run draws what the uninterrupted
    run drew; the generator state lives in the worker processes, which verl's checkpoints do
    not reach) and the current policy's entropy."""
    pl = config.policy_loss
    rt = runtime(pl)

    def generator() -> torch.Generator:
        gens = pl.__dict__.get("_flexent_generators")
        if gens is None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            gens = pl.__dict__["_flexent_generators"] = StepGenerators(
                section_of(config).seed, rank
            )
        return gens.get(rt.get("step"), device)  # type: ignore[no-any-return]

    return loss_arguments(
        name,
        verl_loss_params(name, config),
        generator=generator,
        entropy=rt.get("entropy"),
        missing_entropy_hint=_missing_entropy_hint(rt),
        old_entropy=rt.get("old_entropy"),
        missing_old_hint=(
            "verl's old-log-prob pass writes pi_old's per-token entropy into the batch; it is "
            "skipped with algorithm.rollout_correction.bypass_mode=true, and it reaches the loss "
            f"through flexent's driver: {SYNC_HINT}"
        ),
    )


def _missing_entropy_hint(rt: dict[str, Any]) -> str:
    """Why the current policy's entropy is missing: flexent's loss wrapper ran (it marks the
    runtime dict) but verl's model output had none, or the wrapper did not run at all."""
    if rt.get("wrapped"):
        return CALCULATE_ENTROPY_HINT
    return f"it reaches the loss through flexent's loss wrapper: {SYNC_HINT}"


def _warn_once(config: Any, loss_agg_mode: str) -> None:
    """:func:`config_warnings` at the first call with this config object (per process)."""
    if config.policy_loss.__dict__.setdefault("_flexent_warned", False):
        return
    config.policy_loss.__dict__["_flexent_warned"] = True
    for msg in config_warnings(config, loss_agg_mode):
        warnings.warn(msg, stacklevel=3)


def verl_metrics(flexent_metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """flexent keys under ``actor/`` plus verl's own names for the shared quantities."""
    out = {f"actor/{k}": float(v.detach()) for k, v in flexent_metrics.items()}
    aliases = {
        "actor/pg_clipfrac": "clip/frac",
        "actor/ppo_kl": "policy/kl_k1",
        "actor/pg_clipfrac_lower": "clip/frac_dual",
    }
    for verl_key, key in aliases.items():
        if key in flexent_metrics:
            out[verl_key] = float(flexent_metrics[key].detach())
    return out


def make_verl_loss(name: str) -> Any:
    """verl-signature wrapper of flexent loss ``name`` (see the module docstring)."""
    fn = get_policy_loss(name)

    def verl_policy_loss(
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        loss_agg_mode: str = "token-mean",
        config: Any = None,
        rollout_is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        if config is None:
            raise ValueError(f"{PREFIX}{name} needs verl's actor config (config=None)")
        pl = config.policy_loss
        if "w_up" not in runtime(pl):  # no driver: nothing it delivers may be needed
            section = section_of(config)
            if section.uses_bonus:
                raise RuntimeError(
                    f"{KEY} sets a flexent entropy bonus (entropy_coef / adaptive_entropy / a "
                    f"bonus actuator), which flexent's loss wrapper applies: {SYNC_HINT}"
                )
            if section.shapes_advantages:
                raise RuntimeError(
                    f"strategy {section.strategy!r} shapes the advantages each step, which "
                    f"flexent's driver delivers: {SYNC_HINT}"
                )
        shaping = runtime(pl).get("shaping")  # shipped by the driver with every shaping step
        if shaping is not None:  # the loss-weight controllers act through the advantages
            advantages = shape_advantages(shaping[0], shaping[1], advantages, logprobs=log_prob)
        _warn_once(config, loss_agg_mode)
        eps_low, eps_high = thresholds_for(config, old_log_prob, log_prob)
        params = _loss_params(name, config, log_prob.device)
        out = fn(
            log_prob,
            old_log_prob,
            advantages,
            response_mask,
            eps_low=eps_low,
            eps_high=eps_high,
            **params,
        )
        per_token = out.per_token_loss
        if rollout_is_weights is not None:
            per_token = per_token * rollout_is_weights
        top = section_of(config).top_entropy_quantile
        if top < 1.0:
            per_token = per_token * _top_entropy(config, response_mask, top)
        loss = agg_loss(
            loss_mat=per_token,
            loss_mask=response_mask,
            loss_agg_mode=loss_agg_mode,
            **config.global_batch_info,
        )
        metrics = verl_metrics(out.metrics)
        metrics.update(
            _region_metrics(
                config, log_prob, old_log_prob, advantages, response_mask, eps_low, eps_high
            )
        )
        metrics.update(
            {
                f"actor/control/{k}": float(v)
                for k, v in zip(("w_up", "w_low"), step_weights(config), strict=True)
            }
        )
        return loss, metrics

    verl_policy_loss.__name__ = verl_policy_loss.__qualname__ = f"{PREFIX}{name}"
    verl_policy_loss.__doc__ = f"flexent loss {name!r} in verl's policy-loss signature."
    return verl_policy_loss


def _top_entropy(config: Any, mask: torch.Tensor, top: float) -> torch.Tensor:
    """The high-entropy-minority mask (``policy_loss.top_entropy_quantile``) of this batch."""
    rt = runtime(config.policy_loss)
    entropy = rt.get("entropy")
    if entropy is None:
        raise RuntimeError(
            f"{KEY}.top_entropy_quantile needs the current policy's per-token entropy: "
            + _missing_entropy_hint(rt)
        )
    return high_entropy_mask(entropy, mask, top).to(entropy.dtype)


def _region_metrics(
    config, log_prob, old_log_prob, advantages, mask, eps_low, eps_high
) -> dict[str, float]:
    """The region metrics of this micro-batch as token-weighted pairs (:func:`weighted_pairs`):
    verl averages micro-batches without weights, and a region's conditional means must not
    count a micro-batch where the region is empty as 0."""
    schemes = tuple(section_of(config).region_schemes)
    entropy = runtime(config.policy_loss).get("old_entropy")
    if not schemes or entropy is None or entropy.shape != old_log_prob.shape:
        return {}
    stats = region_stats(
        log_prob.detach(),
        old_log_prob,
        advantages,
        mask,
        entropy=entropy,
        eps_low=eps_low,
        eps_high=eps_high,
        schemes=schemes,
    )
    return weighted_pairs(stats, region_token_weights(stats, mask))


def weighted_pairs(
    values: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Per key, ``value * weight`` under :data:`WEIGHTED_SUM` and ``weight`` under
    :data:`TOKEN_WEIGHT`. verl averages each over the micro-batches, data-parallel ranks and
    mini-batches without weights; the ratio of the two averages, taken by the driver
    (:func:`token_weighted_means`), is the token-weighted mean of the step."""
    out = {}
    for key, value in values.items():
        out[WEIGHTED_SUM + key] = float(value * weights[key])
        out[TOKEN_WEIGHT + key] = float(weights[key])
    return out


def token_weighted_means(metrics: dict[str, Any]) -> None:
    """Replace, in the driver's reduced ``metrics``, each pair of :func:`weighted_pairs` by its
    token-weighted mean under ``actor/<key>`` (0 where the weight is 0, e.g. a region no
    micro-batch had)."""
    for name in [k for k in metrics if k.startswith(WEIGHTED_SUM)]:
        key = name[len(WEIGHTED_SUM) :]
        total, weight = float(metrics.pop(name)), float(metrics.pop(TOKEN_WEIGHT + key))
        metrics[f"actor/{key}"] = total / weight if weight > 0 else 0.0


def register_all() -> list[str]:
    """Register every flexent loss verl can feed in verl's registry as ``flexent_<name>``;
    returns the names. A loss that needs pi_old's second term (``clip_v``: a sum over the
    vocabulary) is left out: verl's loss sees log-probs, never logits."""
    names = []
    for name in verl_losses():
        register_policy_loss(PREFIX + name)(make_verl_loss(name))
        names.append(PREFIX + name)
    return names


class FlexentActorLoss:
    """verl's ``ppo_loss`` with flexent's per-step values delivered to the policy loss.

    Installed by :class:`~flexent.integrations.verl.trainer.FlexentPPOTrainer` with
    ``actor_rollout_wg.set_loss_fn``; picklable (it travels to every actor worker).
    """

    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, model_output: Any, data: Any, dp_group: Any = None) -> Any:
        rt = runtime(self.config.policy_loss)
        rt["wrapped"] = True  # the loss tells a missing model output from a missing wrapper
        values = {k: tu.get_non_tensor_data(data, k, None) for k in RUNTIME_KEYS}
        if any(v is not None for v in values.values()):
            if any(v is None for v in values.values()):
                raise RuntimeError(f"incomplete flexent step data in the batch: {values}")
            rt.update(step=int(values["flexent_step"]), w_up=float(values["flexent_w_up"]))
            rt["w_low"] = float(values["flexent_w_low"])
        coef = float(tu.get_non_tensor_data(data, BONUS_KEY, None) or 0.0)
        rt["shaping"] = read_shaping(tu.get_non_tensor_data(data, SHAPING_KEY, None))
        rt["old_entropy"] = _old_entropy(data)
        entropy = model_output.get("entropy")  # the current policy's, as verl's ppo_loss
        if entropy is not None:
            entropy = no_padding_2_padding(entropy, data)
            rt["entropy"] = entropy.detach()
        try:
            loss, metrics = ppo_loss(self.config, model_output, data, dp_group)
        finally:
            rt.clear()
        if coef == 0.0:
            return loss, metrics
        if entropy is None:
            raise RuntimeError(
                "flexent's entropy bonus needs the current policy's per-token entropy: "
                + CALCULATE_ENTROPY_HINT
            )
        # aggregated exactly as verl's own actor.entropy_coeff bonus in ppo_loss
        mask = data.select("response_mask").to_padded_tensor()["response_mask"].to(bool)
        bonus = agg_loss(loss_mat=entropy, loss_mask=mask, loss_agg_mode=self.config.loss_agg_mode,
                         **self.config.global_batch_info)  # fmt: skip
        metrics["actor/flexent/entropy_bonus"] = Metric(
            value=coef * bonus, aggregation=metrics["actor/pg_loss"].aggregation
        )
        return loss - coef * bonus, metrics


def _old_entropy(data: Any) -> torch.Tensor | None:
    """pi_old's per-token entropy ``[B, T]`` when the batch carries it (verl's v1 trainer
    writes it as ``entropy`` next to ``old_log_probs``), else None."""
    # TensorDict does not support `in` on itself: ask its keys.
    if "entropy" not in data.keys() or "response_mask" not in data.keys():  # noqa: SIM118
        return None
    padded = data.select("response_mask", "entropy").to_padded_tensor()
    entropy = padded["entropy"]
    if not isinstance(entropy, torch.Tensor) or entropy.shape != padded["response_mask"].shape:
        return None
    return entropy.detach().float()

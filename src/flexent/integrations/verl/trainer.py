"""``flexent_sync``: verl's synchronous v1 PPO trainer plus flexent's step delivery.

Selected with ``trainer.v1.trainer_mode=flexent_sync`` (verl's own trainer registry, filled by
the plugin). Everything verl does is unchanged; four hooks are added:

- ``_load_checkpoint`` (verl calls it once, at the end of setup): build the strategy on the
  driver, check the loss is registered, warn when clipping is inert, install
  :class:`FlexentActorLoss` on the actor workers with ``set_loss_fn``; then verl resumes, and
  the strategy state is restored from the same ``global_step_N`` folder.
- ``_compute_old_log_prob``: after verl, read pi_old's per-token ``entropy`` and the
  ``response_mask`` of the batch back from TransferQueue and hand their mean token entropy to
  the strategy (verl's ``actor/entropy`` is aggregated with ``actor.loss_agg_mode``, so under
  the ``seq-mean-*`` modes it is not the mean token entropy); logged as ``actor/entropy/mean``.
- ``_update_actor``: put ``flexent_step``/``flexent_w_up``/``flexent_w_low`` and the step's
  entropy-bonus coefficient ``flexent_entropy_coef`` into the batch's ``extra_info`` (verl turns
  it into non-tensor data of every micro-batch), then call verl; turn the loss's token-weighted
  pairs (the region metrics) into means (``loss.token_weighted_means``).
- ``_save_checkpoint``: write the controller's ``flexent_state.json`` into ``global_step_N``
  before verl marks the checkpoint complete (a resume also reads the ``flexent_strategy.json``
  of checkpoints written before the adapters shared one format).

verl checks ``trainer_mode == "sync"`` in several places (replay buffer, TransferQueue
checkpointing); this class reports ``"sync"`` there so that it behaves as the sync trainer, and
reads its settings from ``trainer.v1.sync``.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.config import omega_conf_to_dataclass

from flexent.control import handle_inert
from flexent.integrations.verl.advantage import NAME as ADVANTAGE_NAME
from flexent.integrations.verl.advantage import qae_params
from flexent.integrations.verl.config import (
    KEY,
    check_entropy,
    check_registered,
    config_warnings,
    flexent_loss_name,
    is_flexent_loss,
    section_of,
    std_eps_pair,
    verl_loss_params,
)
from flexent.integrations.verl.loss import FlexentActorLoss, token_weighted_means
from flexent.integrations.verl.step import (
    observe_entropy,
    step_controller,
    step_data,
    step_metrics,
)
from flexent.masked import masked_mean

logger = logging.getLogger(__name__)
TRAINER_MODE = "flexent_sync"


def clipping_is_inert(config: Any) -> bool:
    """True when each rollout batch feeds exactly one optimizer step (ratio == 1,
    docs/method.md §1).

    ``use_dynamic_bsz`` does not matter: verl splits the update batch into mini-batches of
    ``ppo_mini_batch_size`` either way (``engine_workers.train_mini_batch``); dynamic batch size
    only changes how each mini-batch is cut into micro-batches.
    """
    actor = config.actor_rollout_ref.actor
    return int(actor.ppo_epochs) == 1 and int(actor.ppo_mini_batch_size) >= int(
        config.data.train_batch_size
    )


@register_trainer(TRAINER_MODE)
class FlexentPPOTrainer(PPOTrainerSync):
    """verl's sync trainer that delivers the training step to flexent's policy loss."""

    @property  # type: ignore[override]
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        # verl's __init__ assigns config.trainer.v1.trainer_mode (= "flexent_sync") here.
        self.__dict__["_requested_trainer_mode"] = value

    def _flexent_setup(self) -> None:
        actor_cfg = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        pl = actor_cfg.policy_loss
        check_registered(pl.loss_mode)
        if is_flexent_loss(pl.loss_mode):  # verl keys vs loss_params, before any GPU work
            verl_loss_params(flexent_loss_name(pl.loss_mode), actor_cfg)
        if self.config.get("distillation") and self.config.distillation.get("enabled", False):
            raise ValueError("trainer_mode=flexent_sync does not support distillation")
        check_entropy(actor_cfg)
        if self.config.algorithm.get("adv_estimator") == ADVANTAGE_NAME:
            qae_params(self.config.algorithm)  # a bad quantile_k is one line, before any rollout
        section = section_of(actor_cfg)
        control = section.control(eps_std=std_eps_pair(actor_cfg))
        self.flexent = step_controller(control, total_steps=int(self.total_training_steps))
        if clipping_is_inert(self.config):
            handle_inert(
                section.on_inert,
                f"flexent: ppo_epochs=1 and ppo_mini_batch_size >= train_batch_size, so each "
                "rollout batch feeds one optimizer step, the ratio is 1 and clipping (hence "
                f"every flexent strategy) does nothing. Use several mini-batches or epochs, or "
                f"set {KEY}.on_inert=warn|ignore.",
            )
        for msg in config_warnings(actor_cfg):
            logger.warning(msg)
            warnings.warn(msg, stacklevel=2)
        self.actor_rollout_wg.set_loss_fn(FlexentActorLoss(actor_cfg))

    def _load_checkpoint(self) -> None:
        self._flexent_setup()
        super()._load_checkpoint()
        if self.global_steps > 0:
            self.flexent.load(self._checkpoint_folder(self.global_steps))

    def _checkpoint_folder(self, step: int) -> str:
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            folder = str(trainer.resume_from_path)
        else:
            folder = os.path.join(trainer.default_local_dir, f"global_step_{step}")
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)

    def _save_checkpoint(self) -> None:
        folder = os.path.join(
            self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"
        )
        self.flexent.save(folder)
        super()._save_checkpoint()

    def _compute_old_log_prob(self, batch: Any, metrics: dict) -> Any:
        batch = super()._compute_old_log_prob(batch, metrics)
        correction = self.config.algorithm.get("rollout_correction", None)
        if correction and correction.get("bypass_mode", False):
            return batch  # verl skipped the old-log-prob pass: no entropy was measured
        data = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=["entropy", "response_mask"],
        ).to_padded_tensor()
        entropy = float(masked_mean(data["entropy"].float(), data["response_mask"]))
        # with parameter_sync_step > 1 the strategy keeps the first sub-batch's value: log that
        metrics.setdefault("actor/entropy/mean", entropy)
        observe_entropy(self.flexent, self.global_steps, entropy)
        return batch

    def _update_actor(self, batch: Any, metrics: dict) -> Any:
        batch.extra_info.update(step_data(self.flexent, self.global_steps))
        batch = super()._update_actor(batch, metrics)
        token_weighted_means(metrics)  # the region metrics, weighted over the micro-batches
        metrics.update(step_metrics(self.flexent))
        return batch

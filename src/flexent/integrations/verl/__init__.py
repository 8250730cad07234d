"""flexent in verl 0.9.1: a plugin, not a fork (see docs/verl.md).

verl imports this package in every process through its ``verl.plugins`` entry point (declared
in flexent's pyproject.toml; ``VERL_USE_EXTERNAL_MODULES=flexent.integrations.verl`` is the
fallback). Importing it

- registers every flexent loss in verl's policy-loss registry as ``flexent_<name>``
  (``flexent_ppo_clip``, ``flexent_ce_gppo``, ``flexent_gspo``, ``flexent_vespo``, ... one per
  name of ``flexent.losses.list_policy_losses()``);
- registers the advantage estimator ``flexent_qae`` (QAE, :mod:`flexent.integrations.verl.advantage`:
  ``algorithm.adv_estimator=flexent_qae +algorithm.quantile_k=0.4``);
- registers the trainer mode ``flexent_sync`` (verl's sync v1 trainer that delivers the
  training step and the rollout entropy to the loss, and checkpoints the strategy state),
  when verl's v1 trainer is importable (it needs the ``TransferQueue`` package);
- exports :class:`FlexentPolicyLossConfig`, the ``_target_`` of ``actor.policy_loss``;
- with a trl that lacks the class verl's model build imports (trl >= 1.0, e.g. in
  ``flexent[trl,verl]``), makes verl's trl probe false so that verl can build the actor
  (:mod:`flexent.integrations.verl.compat`; verl is untouched otherwise).

Nothing here is imported by flexent's core modules.
"""

from __future__ import annotations

import importlib.util

import verl  # noqa: F401  (first: verl finishes its own init, plugin loading included)

from flexent.control import StepController
from flexent.integrations.verl.advantage import NAME as ADVANTAGE_ESTIMATOR  # registers it
from flexent.integrations.verl.compat import patch_trl_probe
from flexent.integrations.verl.config import (
    FlexentPolicyLossConfig,
    check_registered,
    flexent_loss_name,
)
from flexent.integrations.verl.loss import FlexentActorLoss, register_all

REGISTERED_LOSSES = register_all()
TRL_PROBE_PATCHED = patch_trl_probe()

if importlib.util.find_spec("transfer_queue") is not None:
    from flexent.integrations.verl.trainer import TRAINER_MODE, FlexentPPOTrainer
else:  # verl's v1 trainer cannot run here either; the losses still work with other trainers
    TRAINER_MODE, FlexentPPOTrainer = "flexent_sync", None  # type: ignore[misc,assignment]

__all__ = [
    "ADVANTAGE_ESTIMATOR",
    "REGISTERED_LOSSES",
    "TRAINER_MODE",
    "TRL_PROBE_PATCHED",
    "FlexentActorLoss",
    "FlexentPPOTrainer",
    "FlexentPolicyLossConfig",
    "StepController",
    "check_registered",
    "flexent_loss_name",
]

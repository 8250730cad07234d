"""flexent in TRL (extra ``flexent[trl]``): one machine, ``flexent train`` and ``flexent demo``.

Mirrors :mod:`flexent.integrations.verl`:

- :mod:`.trainer`: :class:`FlexentGRPOTrainer`, TRL's ``GRPOTrainer`` with flexent's thresholds,
  strategy, loss and diagnostics; the inert-clipping check and :func:`check_trainer_args` (the TRL
  settings a flexent loss does not apply); strategy state in checkpoints.
- :mod:`.loss`: the loss step (TRL 1.16's ``_compute_loss`` with a flexent loss).
- :mod:`.metrics`: the per-step diagnostics written into TRL's metric store.
- :mod:`.callbacks`: ``metrics.jsonl`` and the progress bar of ``flexent train``.
- :mod:`.config`: the config of ``flexent train``, its ``trainer`` section checked against
  TRL's ``GRPOConfig``.
- :mod:`.preflight`: the checks of ``flexent train`` before the model loads.
- :mod:`.checkpoints`: a run directory's checkpoints (which one ``--resume`` continues).
- :mod:`.run`: one ``flexent train`` run, config -> run directory.

The settings are the engine-neutral :class:`flexent.control.EntropyControl`.
"""

from flexent.control import EntropyControl, InertClippingError
from flexent.integrations.trl.trainer import (
    NORMALISATIONS,
    STATE_FILE,
    FlexentGRPOTrainer,
    check_trainer_args,
    clipping_is_inert,
    inert_message,
)

__all__ = [
    "NORMALISATIONS",
    "STATE_FILE",
    "EntropyControl",
    "FlexentGRPOTrainer",
    "InertClippingError",
    "check_trainer_args",
    "clipping_is_inert",
    "inert_message",
]

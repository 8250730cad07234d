"""The engine-neutral step layer: what flexent changes in a policy update, and when.

- :mod:`flexent.control.settings`: :class:`EntropyControl`, every setting, validated once.
- :mod:`flexent.control.step`: :class:`StepController`, per optimizer step the strategy's
  weights, the entropy-bonus coefficient and the checkpointed state (one file, one format).
- :mod:`flexent.control.loss_call`: the step's eps (the weight-0 rule), the loss's
  trait-supplied arguments and the per-step generators.

The engine adapters (``flexent.integrations.trl``, ``flexent.integrations.verl``) translate
their batch and step into calls of this layer and its metrics back into their logs.
"""

from flexent.control.loss_call import StepGenerators, loss_arguments, step_eps
from flexent.control.settings import (
    DEFAULT_ON_INERT,
    ON_INERT,
    EntropyControl,
    InertClippingError,
    handle_inert,
    step_seed,
)
from flexent.control.step import (
    LEGACY_STATE_FILE,
    STATE_FILE,
    MissingEntropyError,
    StepController,
    state_file,
)

__all__ = [
    "DEFAULT_ON_INERT",
    "LEGACY_STATE_FILE",
    "ON_INERT",
    "STATE_FILE",
    "EntropyControl",
    "InertClippingError",
    "MissingEntropyError",
    "StepController",
    "StepGenerators",
    "handle_inert",
    "loss_arguments",
    "state_file",
    "step_eps",
    "step_seed",
]

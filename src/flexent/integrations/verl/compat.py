"""verl 0.9.1 next to trl >= 1.0: the one compatibility fix the plugin applies.

The conflict: verl builds every FSDP model (actor, ref, critic) through
``verl.models.transformers.monkey_patch.apply_monkey_patch``, which imports trl's
``AutoModelForCausalLMWithValueHead`` (from ``trl.experimental.ppo``, else from ``trl``) to
patch its ``state_dict`` whenever ``is_trl_available()`` is true, and that probe only asks
whether a package named ``trl`` is installed. trl 1.x has the class in neither place (verl's
own ``[fsdp]`` extra pins trl 0.27), so with ``flexent[trl,verl]`` or ``flexent[dev]`` verl
raises ``ImportError`` at actor init, on a GPU as much as on CPU.

The fix (:func:`patch_trl_probe`, called when the plugin is imported, i.e. in every verl
process): when, and only when, trl is installed and lacks the class at both places verl looks,
the name ``is_trl_available`` *inside verl's monkey_patch module* is rebound to
:func:`trl_has_value_head`, which answers whether verl's import would succeed (here: False).
verl then skips patching a class that does not exist. Nothing else changes: with trl absent, or
a trl that has the class, verl is left untouched; ``verl.utils.import_utils.is_trl_available``
and verl's value-head model loader (``verl.utils.model.load_valuehead_model``, used for trl
value-head critics, which this trl cannot build either way) keep verl's own probe.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any

logger = logging.getLogger(__name__)
VALUE_HEAD = "AutoModelForCausalLMWithValueHead"
# where verl 0.9.1 imports it from, in order (monkey_patch.py, apply_monkey_patch)
VALUE_HEAD_MODULES = ("trl.experimental.ppo", "trl")


def trl_installed() -> bool:
    """Whether a package named ``trl`` is importable (verl's own probe, without importing)."""
    try:
        return importlib.util.find_spec("trl") is not None
    except (ImportError, ValueError):
        return False


def trl_has_value_head() -> bool:
    """Whether verl's import of ``AutoModelForCausalLMWithValueHead`` would succeed.

    The same imports as verl, in the same order; trl's experimental-API warning is silenced.
    """
    if not trl_installed():
        return False
    for name in VALUE_HEAD_MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, VALUE_HEAD):
            return True
    return False


def patch_trl_probe(monkey_patch: Any = None) -> bool:
    """Make verl's trl probe in ``monkey_patch`` (default: verl's
    ``verl.models.transformers.monkey_patch``) true only when trl has the class verl imports.

    Returns True when it rebound the probe (trl installed without the class), False when it
    left verl untouched (trl absent, or a trl that has the class).
    """
    if not trl_installed() or trl_has_value_head():
        return False
    if monkey_patch is None:
        monkey_patch = importlib.import_module("verl.models.transformers.monkey_patch")
    monkey_patch.is_trl_available = trl_has_value_head
    logger.info(
        "flexent: the installed trl has no %s, so verl's model build skips its trl patch "
        "(flexent.integrations.verl.compat; docs/verl.md)",
        VALUE_HEAD,
    )
    return True

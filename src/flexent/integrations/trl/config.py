"""The ``trainer`` section of the ``flexent train`` config: TRL ``GRPOConfig`` fields.

:func:`load_config` is :func:`flexent.config.load_config` (the engine-neutral typed config)
plus :func:`check_trainer`: each ``trainer`` key checked against ``GRPOConfig``'s own field
list and type hints. ``flexent train``, ``flexent demo`` and ``flexent sweep`` load configs
with it, so a misspelt GRPOConfig field fails before anything runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from trl import GRPOConfig

from flexent.config import ConfigError, FlexentConfig
from flexent.config import load_config as load_neutral_config

# GRPOConfig fields flexent sets itself (from output.*), so they may not appear in `trainer`.
MANAGED_TRAINER_KEYS = ("output_dir", "logging_dir", "resume_from_checkpoint")


def load_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> FlexentConfig:
    """:func:`flexent.config.load_config` with the ``trainer`` section checked against TRL."""
    return load_neutral_config(path, overrides, trainer_check=check_trainer)


def check_trainer(trainer: dict[str, Any], where: str = "") -> None:
    """Every ``trainer`` key is a ``GRPOConfig`` field of the right type that flexent does not
    set itself; raises ConfigError naming ``trainer.<key>`` (and ``where``, the file)."""
    known = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    hints = typing.get_type_hints(GRPOConfig)
    for key, value in trainer.items():
        if key in MANAGED_TRAINER_KEYS:
            raise ConfigError(f"trainer.{key}{where} is set by flexent (see output.*); remove it")
        if key not in known:
            close = [k for k in known if key.lower() in k.lower()][:5]
            hint = f"; similar: {close}" if close else ""
            raise ConfigError(f"trainer.{key}{where} is not a TRL GRPOConfig field{hint}")
        if not _type_ok(value, hints.get(key, Any)):
            raise ConfigError(
                f"trainer.{key}{where} must be {_type_name(hints.get(key))}, got {value!r}"
            )


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any or hint is None:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        if issubclass(hint, str) and hint is not str:  # str-valued enums (e.g. save_strategy)
            return isinstance(value, str)
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")

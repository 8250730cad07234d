"""Named bases: a spec's ``base:`` may name a registered setup instead of a train YAML.

``flexent demo`` runs a one-seed sweep, and a sweep with ``base: demo`` reuses the demo's
config, cached warm-up model and prompt files. The sweep imports no base's module (that would
be an import cycle through the demo): the demo registers its base here when
``flexent.demo`` is imported (``flexent sweep`` imports it). A base is the train config every
run starts from and how to build its :class:`Setup` from the spec's ``bootstrap`` mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Setup(Protocol):
    """What a named base prepares before the runs (a model, data files) in a cache folder."""

    def overrides(self, cache: Path) -> dict[str, str]:
        """The config keys the setup fills (paths as they will be after :meth:`prepare`)."""
        ...

    def prepared(self, cache: Path) -> bool:
        """Whether :meth:`prepare` has nothing left to do."""
        ...

    def prepare(self, cache: Path) -> dict[str, str]:
        """Build (or reuse) everything in ``cache``; returns :meth:`overrides`."""
        ...


@dataclass(frozen=True)
class NamedBase:
    """``config``: the flexent train YAML every run starts from; ``setup``: the spec's
    ``bootstrap`` mapping -> its :class:`Setup` (ValueError or TypeError on a bad key)."""

    config: Path
    setup: Callable[[Mapping[str, Any]], Setup]


_BASES: dict[str, NamedBase] = {}


def register_base(name: str, base: NamedBase) -> None:
    """Make ``base: <name>`` in a sweep spec mean ``base`` (a second registration replaces it)."""
    _BASES[name] = base


def named_base(name: str) -> NamedBase | None:
    """The base registered as ``name``, or None (then ``base`` is a train YAML's path)."""
    return _BASES.get(name)


def base_names() -> list[str]:
    """The registered names."""
    return sorted(_BASES)

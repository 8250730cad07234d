"""Sweep specs: parse and validate a YAML spec, expand it into runs (``flexent sweep``).

A spec (every key; docs/sweeps.md)::

    name: regime              # default: the spec file's stem
    base: demo                # a named base (:mod:`.bases`; "demo": the demo's setup and its
                              # cached warm-up model) or a flexent train YAML (a path,
                              # relative to the spec file)
    bootstrap: {n_numbers: 3} # named base only: its setup's settings (demo: the
                              # flexent.demo.Bootstrap fields, task and model)
    out: runs/sweeps/regime   # default: runs/sweeps/<name>
    overrides: {trainer.max_steps: 200}           # every run: dotted key -> one value
    groups:                   # the arms: name -> {dotted key: one value}
      static: {entropy_control.strategy: static}
      clip-higher: {entropy_control.thresholds.eps_std: [0.2, 0.28]}   # a list is a value here
    grid:                     # crossed with the groups: dotted key -> list of alternatives
      trainer.num_iterations: [1, 4]
    seeds: [0, 1, 2]          # trainer.seed of each run
    baseline: static          # the group (or, without groups, the arm) the report compares
                              # every other arm with, within the same grid cell

Without ``groups`` the arms are the grid's combinations; without ``grid`` they are the groups.
Each run is an ordinary ``flexent train`` run directory ``<out>/<arm>/seed<s>``. Every run's
config is built and validated (``flexent.integrations.trl.config.load_config``, the config of
``flexent train``) before anything runs, so an unknown key, an empty grid or an unknown
strategy fails at once, naming the key.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexent.errors import UserError
from flexent.sweep.bases import NamedBase, Setup, base_names, named_base

SPEC_KEYS = ("name", "base", "bootstrap", "out", "overrides", "groups", "grid", "seeds", "baseline")


class SpecError(UserError):
    """A bad sweep spec; the message names the file and the key."""


@dataclass(frozen=True)
class Arm:
    """One compared setting: its name, its group and grid cell (``""`` when the spec has
    none), and its dotted overrides (on top of the spec's)."""

    name: str
    overrides: dict[str, Any]
    group: str = ""
    cell: str = ""


@dataclass(frozen=True)
class RunSpec:
    """One run: arm, seed, run directory and the full list of ``key=value`` overrides."""

    arm: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.arm}/seed{self.seed}"


@dataclass
class SweepSpec:
    """A parsed spec (see the module docstring); ``path`` is the spec file."""

    path: Path
    name: str
    base: str
    out: Path
    bootstrap: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: str | None = None

    @property
    def named(self) -> NamedBase | None:
        """The registered base ``base`` names (``demo``), or None for a train YAML."""
        return named_base(self.base)

    def setup(self) -> Setup | None:
        """The named base's setup, built from ``bootstrap`` (None for a train YAML); a bad
        ``bootstrap`` key is a :class:`SpecError`."""
        if self.named is None:
            return None
        try:
            return self.named.setup(self.bootstrap)
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.path}: bootstrap: {err}") from None

    def base_config(self) -> Path:
        """The flexent train YAML every run starts from."""
        if self.named is not None:
            return self.named.config
        path = Path(self.base)
        return path if path.is_absolute() else self.path.parent / path

    def arms(self) -> list[Arm]:
        """The compared settings: groups x grid combinations (either alone when the other is
        empty), in spec order."""
        combos = [dict(zip(self.grid, values, strict=True))
                  for values in itertools.product(*self.grid.values())]  # fmt: skip
        groups = self.groups or {"": {}}
        arms = []
        for (group, group_ov), combo in itertools.product(groups.items(), combos):
            cell = "__".join(_label(k, v) for k, v in combo.items())
            name = "__".join(p for p in (group, cell) if p) or "base"
            overrides = dict(group_ov)
            for key, value in combo.items():  # an axis value is a mapping of several keys
                overrides.update(value if isinstance(value, dict) else {key: value})
            arms.append(Arm(name, overrides, group, cell))
        return arms

    def baseline_of(self, arm: Arm) -> str | None:
        """The arm ``arm`` is compared with: the baseline group's arm in the same grid cell
        (or the baseline arm itself when the spec has no groups)."""
        if self.baseline is None:
            return None
        if not self.groups:
            return self.baseline
        return "__".join(p for p in (self.baseline, arm.cell) if p)

    def runs(self, setup: Mapping[str, str] | None = None) -> list[RunSpec]:
        """Every (arm, seed) run with its overrides; ``setup`` holds a named base's prepared
        paths (:meth:`Setup.overrides`; the demo's ``model.path``, ``data.source``,
        ``evaluation.source``)."""
        out = []
        for arm in self.arms():
            for seed in self.seeds:
                run_dir = self.out / arm.name / f"seed{seed}"
                items = {**(setup or {}), **self.overrides, **arm.overrides,
                         "trainer.seed": seed, "output.dir": str(run_dir)}  # fmt: skip
                overrides = tuple(f"{k}={_yaml_value(v)}" for k, v in items.items())
                out.append(RunSpec(arm.name, seed, run_dir, overrides))
        return out


def load_spec(path: str | Path, *, out: str | Path | None = None) -> SweepSpec:
    """Read and validate the spec file ``path`` (``out`` overrides its ``out``)."""
    # (lazy: flexent.config imports torch, which `flexent --help` never needs)
    from flexent.config import read_yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec not found: {path}")
    raw = read_yaml(path, error=SpecError)  # duplicate keys (two arms of one name) refused
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a sweep spec is a mapping of {list(SPEC_KEYS)}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {unknown}; valid keys: {list(SPEC_KEYS)}")
    name = _name(path, raw.get("name", path.stem))
    spec = SweepSpec(
        path=path,
        name=name,
        base=_base(path, raw.get("base")),
        out=Path(out or raw.get("out") or Path("runs") / "sweeps" / name),
        bootstrap=_mapping(path, "bootstrap", raw.get("bootstrap", {})),
        overrides=_dotted(path, "overrides", raw.get("overrides", {})),
        groups=_groups(path, raw.get("groups", {})),
        grid=_grid(path, raw.get("grid", {})),
        seeds=_seeds(path, raw.get("seeds", [0])),
        baseline=raw.get("baseline"),
    )
    _check_named_base(spec)
    names = list(spec.groups) if spec.groups else [a.name for a in spec.arms()]
    if spec.baseline is not None and spec.baseline not in names:
        what = "group" if spec.groups else "arm"
        raise SpecError(f"{path}: baseline {spec.baseline!r} is not a {what}; {what}s: {names}")
    return spec


def validate_runs(spec: SweepSpec, runs: list[RunSpec]) -> None:
    """Build every run's config (without loading anything), so that a bad key or value fails
    before the first run starts; the message names the arm, the key and the spec file. The
    trainer settings a run would refuse before loading its model (a TRL loss_type, inert
    clipping, ...) are refused here too, for every run at once."""
    # (lazy: TRL and torch, which reading a spec never needs)
    from flexent.config import ConfigError
    from flexent.errors import UserError
    from flexent.integrations.trl.config import load_config
    from flexent.integrations.trl.preflight import check_inert, check_trainer_settings

    for run in runs:
        try:
            cfg = load_config(spec.base_config(), list(run.overrides))
            check_trainer_settings(cfg)
            check_inert(cfg)
        except (ConfigError, UserError) as err:
            raise SpecError(f"{spec.path}: arm {run.arm!r}: {err}") from None


def _name(path: Path, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", value):
        raise SpecError(f"{path}: name must be a simple file name ([A-Za-z0-9_.-]), got {value!r}")
    return value


def _base(path: Path, value: Any) -> str:
    names = " or ".join(repr(n) for n in base_names())
    if value is None:
        raise SpecError(f"{path}: base is required: {names or 'a named base'} or a flexent "
                        "train YAML file")  # fmt: skip
    if not isinstance(value, str):
        raise SpecError(f"{path}: base must be {names or 'a named base'} or a path, got {value!r}")
    if named_base(value) is None:
        file = Path(value) if Path(value).is_absolute() else path.parent / value
        if not file.is_file():
            known = f" (named bases: {names})" if names else " (no named base is registered)"
            raise SpecError(f"{path}: base config not found: {file}{known}")
    return value


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: {key} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _dotted(path: Path, key: str, value: Any) -> dict[str, Any]:
    out = _mapping(path, key, value)
    for k in out:
        if not isinstance(k, str) or not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+", k
        ):
            raise SpecError(f"{path}: {key}: {k!r} is not a dotted config key (section.key)")
        if k in ("output.dir", "trainer.seed"):
            raise SpecError(f"{path}: {key}.{k} is set by the sweep (out / seeds)")
    return out


def _groups(path: Path, value: Any) -> dict[str, dict[str, Any]]:
    groups = _mapping(path, "groups", value)
    for name, overrides in groups.items():
        _name(path, name)
        groups[name] = _dotted(path, f"groups.{name}", overrides)
    return groups


def _grid(path: Path, value: Any) -> dict[str, list[Any]]:
    grid = _mapping(path, "grid", value)
    for key, values in grid.items():
        if not isinstance(values, list):
            raise SpecError(f"{path}: grid.{key} must be a list of alternatives, got {values!r}")
        if not values:
            raise SpecError(f"{path}: grid.{key} is empty: give at least one value")
        if "." in str(key):
            _dotted(path, "grid", {key: values})
            continue
        _name(path, key)  # an axis: each alternative sets several dotted keys together
        for i, alternative in enumerate(values):
            if not isinstance(alternative, dict) or not alternative:
                raise SpecError(
                    f"{path}: grid.{key}[{i}] must be a mapping of dotted keys (a plain grid "
                    f"key is an axis whose alternatives set several keys), got {alternative!r}"
                )
            _dotted(path, f"grid.{key}[{i}]", alternative)
    return grid


def _seeds(path: Path, value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{path}: seeds must be a non-empty list of ints, got {value!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value):
        raise SpecError(f"{path}: seeds must be ints >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise SpecError(f"{path}: seeds repeat: {value}")
    return list(value)


def _check_named_base(spec: SweepSpec) -> None:
    setup = spec.setup()  # a bad bootstrap key fails here
    if setup is None:
        if spec.bootstrap:
            names = " or ".join(base_names()) or "a named base"
            raise SpecError(f"{spec.path}: bootstrap is only for base: {names}")
        return
    managed = set(setup.overrides(Path()))  # the keys it fills (the paths do not matter here)
    for where, overrides in [("overrides", spec.overrides), *spec.groups.items()]:
        clash = sorted(managed & set(overrides))
        if clash:
            raise SpecError(f"{spec.path}: {where}: {clash} are set by base: {spec.base}")


def _label(key: str, value: Any) -> str:
    """``entropy_control.thresholds.upper``, ``[-0.25, 0.5]`` -> ``upper=-0.25_0.5``; an axis
    ``regime``, ``{a.lr: 0.001, a.steps: 80}`` -> ``regime=0.001_80``."""
    if isinstance(value, dict):
        value = list(value.values())
    text = "_".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{key.rsplit('.', 1)[-1]}={re.sub(r'[^A-Za-z0-9_.+-]', '', text)}"


def _yaml_value(value: Any) -> str:
    """A value as OmegaConf's dotlist parses it back (lists and mappings in flow style)."""
    import yaml

    if isinstance(value, str):
        return value
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10**6)
        .strip()
        .removesuffix("...")
        .strip()
    )

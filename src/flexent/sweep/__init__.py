"""``flexent sweep``: many ``flexent train`` runs from one spec, and their report over seeds.

- :mod:`.spec`: the YAML spec, its validation and its expansion into runs;
- :mod:`.bases`: the named bases a spec's ``base`` may name (``demo``, registered by
  :mod:`flexent.demo`);
- :mod:`.runner`: running them (``jobs`` at a time, resumable, failures isolated);
- :mod:`.results`: each finished run's numbers, by arm and seed;
- :mod:`.compare`, :mod:`.figures`, :mod:`.stats`: the report: numbers over seeds with 95 %
  intervals, arms against the baseline, figures with the seed spread.

See docs/sweeps.md.
"""

from flexent.sweep.bases import NamedBase, Setup, base_names, named_base, register_base
from flexent.sweep.spec import Arm, RunSpec, SpecError, SweepSpec, load_spec, validate_runs

__all__ = [
    "Arm",
    "NamedBase",
    "RunSpec",
    "Setup",
    "SpecError",
    "SweepSpec",
    "base_names",
    "load_spec",
    "named_base",
    "register_base",
    "validate_runs",
]

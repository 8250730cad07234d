"""``flexent sweep``: many ``flexent train`` runs from one spec, and their report over seeds.

- :mod:`.spec`: the YAML spec, its validation and its expansion into runs;
- :mod:`.runner`: running them (``jobs`` at a time, resumable, failures isolated);
- :mod:`.report`, :mod:`.figures`, :mod:`.stats`: numbers over seeds with 95 % intervals,
  figures with the seed spread.

See docs/sweeps.md.
"""

from flexent.sweep.spec import Arm, RunSpec, SpecError, SweepSpec, load_spec, validate_runs

__all__ = ["Arm", "RunSpec", "SpecError", "SweepSpec", "load_spec", "validate_runs"]

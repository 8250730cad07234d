"""A ``flexent train`` run directory's checkpoints: which one a resume continues from.

Its own module because :mod:`.preflight` (checks before a run), :mod:`.run` (the run) and
:mod:`flexent.sweep.runner` (is a run finished, interrupted or new?) all read them.
"""

from __future__ import annotations

import json
from pathlib import Path

from flexent.errors import UserError, json_error
from flexent.integrations.trl.trainer import STATE_FILE


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` (TRL's ``trainer_state.json`` and flexent's strategy
    state both written): a run killed while saving leaves an incomplete one, which is skipped."""
    steps = [
        (int(p.name.split("-")[1]), p)
        for p in run_dir.glob("checkpoint-*")
        if p.is_dir()
        and p.name.split("-")[1].isdigit()
        and (p / "trainer_state.json").is_file()
        and (p / STATE_FILE).is_file()
    ]
    return max(steps)[1] if steps else None


def checkpoint_step(ckpt: Path) -> int:
    """``checkpoint-60`` -> 60."""
    return int(ckpt.name.split("-")[1])


def check_checkpoint(ckpt: Path) -> None:
    """The checkpoint's JSON files parse (a torn write names the file and line)."""
    for name in ("trainer_state.json", STATE_FILE):
        path = ckpt / name
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(json_error(path, err)) from None

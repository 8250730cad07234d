"""Everything ``flexent train`` can check before the model loads and the run directory is written.

:func:`preflight` checks the output folder and the ``trainer`` settings (those a flexent loss does
not apply, inert clipping), loads the training and held-out prompts (bad rows keep their
file:line), checks that they are not empty and carry the columns the reward reads, builds the
reward (its parameters), checks the model path, and for ``--resume`` the checkpoint's files and
the config changes. Every problem raises a :class:`flexent.errors.UserError` whose message names the key,
the file or the flag; the CLI prints it as one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexent.config import ConfigError, FlexentConfig, entropy_control, read_yaml
from flexent.data import load_prompts
from flexent.data.procedural import TASKS
from flexent.errors import UserError
from flexent.integrations.trl.checkpoints import check_checkpoint, last_checkpoint
from flexent.models.packaged import resolve_packaged
from flexent.rewards import get_reward

# data.params keys for files and named benchmarks (procedural tasks take their own parameters)
FILE_PARAMS = ("data_dir", "on_error")
# settings that change what a resumed run computes; refused unless --allow-config-change
RESUME_KEYS = ("trainer.max_steps", "entropy_control", "trainer.steps_per_generation",
               "trainer.num_iterations", "trainer.gradient_accumulation_steps")  # fmt: skip


@dataclass
class Plan:
    """The checked inputs of a run."""

    run_dir: Path
    checkpoint: Path | None
    rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    reward: Any


def preflight(cfg: FlexentConfig, *, resume: bool, allow_config_change: bool = False) -> Plan:
    """Check what can be checked without the model; raises :class:`UserError`."""
    run_dir = Path(cfg.output.dir)
    check_output_dir(run_dir)
    check_trainer_settings(cfg)
    check_inert(cfg)
    ckpt = last_checkpoint(run_dir) if run_dir.is_dir() else None
    if resume and ckpt is None:
        raise UserError(f"--resume: no complete checkpoint-* directory in {run_dir}")
    if not resume and ckpt is not None:
        raise UserError(
            f"{run_dir} already holds {ckpt.name}; pass --resume to continue it, or set "
            "output.dir to a new directory"
        )
    if ckpt is not None:
        check_checkpoint(ckpt)
        check_resume_config(cfg, run_dir / "config.yaml", allow=allow_config_change)
    reward = build_reward(cfg)
    rows = load_rows(cfg, evaluation=False)
    check_columns(reward, rows, "data.source", cfg.data.source)
    check_column_types(rows, "data.source", cfg.data.source)
    eval_rows: list[dict[str, Any]] = []
    if cfg.evaluation.enabled:
        eval_rows = load_rows(cfg, evaluation=True)
        source = cfg.evaluation.source or cfg.data.source
        check_columns(reward, eval_rows, "evaluation.source", source)
    check_model_path(cfg.model.path, cfg.model.gguf_file)
    return Plan(run_dir, ckpt, rows, eval_rows, reward)


def check_output_dir(run_dir: Path) -> None:
    """``output.dir`` is a writable folder or can be created: transformers would otherwise fail
    only after the model has loaded. The check writes a temporary file into ``output.dir`` or,
    when it does not exist yet, into its nearest existing ancestor, and creates no folder:
    runs of a sweep started side by side (``--jobs``) share ancestors, and a folder made and
    removed again by one of them would race with the others."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output.dir {run_dir} is a file, not a folder")
    probe = run_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if probe.exists() and not probe.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(probe))
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise UserError(
            f"output.dir {run_dir}: cannot write there ({err.strerror or err}: {probe})"
        ) from None


def trainer_args(cfg: FlexentConfig) -> Any:
    """The ``trainer`` section over ``GRPOConfig``'s field defaults, as attributes: what the
    trainer's checks read, without building a ``GRPOConfig`` (which looks at the machine)."""
    from types import SimpleNamespace

    from trl import GRPOConfig

    fields = dataclasses.fields(GRPOConfig)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    return SimpleNamespace(**{**defaults, **cfg.trainer})


def check_trainer_settings(cfg: FlexentConfig) -> None:
    """Refuse the TRL settings a flexent loss does not apply (a ``loss_type`` that is a TRL
    loss, sequence-level ratios, ``delta``, TRL's entropy bonus): the trainer's own check
    (:func:`~flexent.integrations.trl.trainer.check_trainer_args`), from the config, before the
    model loads. Its warnings are left to the trainer."""
    from flexent.integrations.trl.trainer import check_trainer_args

    try:
        check_trainer_args(trainer_args(cfg), entropy_control(cfg))
    except ValueError as err:
        raise UserError(str(err)) from None


def check_inert(cfg: FlexentConfig) -> None:
    """With ``entropy_control.on_inert: error``, refuse a trainer section whose generation
    batches each feed exactly one optimizer step (the trainer's own check, from the config:
    before the model loads)."""
    if cfg.entropy_control.on_inert != "error":
        return
    from flexent.integrations.trl.trainer import clipping_is_inert, inert_message

    args = trainer_args(cfg)
    if clipping_is_inert(args):
        message = inert_message(args).removeprefix("flexent: ")
        raise UserError(f"{message} (entropy_control.on_inert: warn runs it anyway)")


def build_reward(cfg: FlexentConfig) -> Any:
    try:
        return get_reward(cfg.reward.name, **cfg.reward.params)
    except TypeError as err:  # an unknown keyword of the reward's constructor
        raise ConfigError(f"reward.params: {err}") from None
    except ValueError as err:
        raise ConfigError(f"reward: {err}") from None


def load_rows(cfg: FlexentConfig, *, evaluation: bool) -> list[dict[str, Any]]:
    """The training (or held-out) prompts; an empty set or bad ``*.params`` is a UserError."""
    d, e = cfg.data, cfg.evaluation
    section = "evaluation" if evaluation else "data"
    source = str((e.source or d.source) if evaluation else d.source)
    params = dict(e.params if evaluation and e.params else d.params)
    key = f"{section}.params" if evaluation and e.params else "data.params"
    if source in TASKS:
        kwargs: dict[str, Any] = {"seed": params.pop("seed", 0), "task_params": params}
    else:
        unknown = sorted(set(params) - set(FILE_PARAMS))
        if unknown:
            raise ConfigError(
                f"{key}: {unknown} are not options of a file or benchmark source "
                f"({source}); accepted: {list(FILE_PARAMS)} (task parameters are for the "
                "procedural tasks countdown and arithmetic)"
            )
        kwargs = params
    try:
        rows = load_prompts(
            source,
            split=e.split if evaluation else d.split,
            prompt_field=d.prompt_field,
            answer_field=d.answer_field,
            max_samples=e.max_samples if evaluation else d.max_samples,
            instruction=d.instruction,
            system_prompt=d.system_prompt,
            chat=d.chat,
            **kwargs,
        )
    except UserError:
        raise
    except (ValueError, FileNotFoundError, OSError) as err:
        raise UserError(f"{section}.source {source}: {err}") from None
    if not rows:
        raise UserError(f"{section}.source {source}: no prompts (empty file or max_samples)")
    return rows  # load_prompts' Prompts: a list that also knows each row's file:line


def check_columns(reward: Any, rows: list[dict[str, Any]], key: str, source: str) -> None:
    """Every row carries the columns the reward reads, with values of the types it needs
    (before any generation); the message names the row's file:line."""
    problem_of = getattr(reward, "row_problem", None)
    if problem_of is None:
        return
    for i, row in enumerate(rows):
        problem = problem_of(row)
        if problem:
            raise UserError(f"{key} {row_origin(rows, i, source)}: {problem}")


def row_origin(rows: list[dict[str, Any]], i: int, source: str) -> str:
    """Where row ``i`` of ``load_prompts``' rows came from (``data.jsonl:12``), else the
    source and the row's number, counted from 1."""
    where = getattr(rows, "where", None)
    return where[i] if where and i < len(where) else f"{source} row {i + 1}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


def check_column_types(rows: list[dict[str, Any]], key: str, source: str) -> None:
    """Each column holds one kind of value in every row (null aside): the trainer's dataset
    (Arrow) refuses a column that is a list in one row and a string in another, after the
    model has loaded and without naming the row."""
    first: dict[str, tuple[str, int]] = {}
    for i, row in enumerate(rows):
        for column, value in row.items():
            if value is None:
                continue
            kind = _kind(value)
            seen = first.setdefault(column, (kind, i))
            if seen[0] != kind:
                raise UserError(
                    f"{key} {row_origin(rows, i, source)}: column {column!r} is a {kind} "
                    f"({value!r:.60}) where {row_origin(rows, seen[1], source)} has a "
                    f"{seen[0]}; a column must hold one type of value in every row"
                )


def check_model_path(path: str, gguf_file: str | None) -> None:
    """A local model path that does not exist (an absolute or relative path, a .gguf file, a
    folder whose parent exists) fails here, as does a packaged model (``pypi:...``) whose
    package is not installed; anything else is treated as a hub name."""
    try:
        path = resolve_packaged(path)
    except FileNotFoundError as err:
        raise UserError(f"model.path: {err}") from None
    p = Path(os.path.expanduser(path))
    if p.exists():
        if gguf_file and p.is_dir() and not (p / gguf_file).is_file():
            raise UserError(f"model.gguf_file: {gguf_file} not found in {p}")
        return
    local = (
        p.is_absolute()
        or path.startswith((".", "~"))
        or p.suffix == ".gguf"
        or (len(p.parts) > 1 and p.parent.exists() and str(p.parent) != ".")
    )
    if local or len(p.parts) > 2:
        raise UserError(f"model.path: {path} does not exist")


def check_resume_config(cfg: FlexentConfig, saved: Path, *, allow: bool) -> None:
    """Refuse a resume whose schedule settings differ from the saved ``config.yaml``."""
    if not saved.is_file():
        return
    old = read_yaml(saved) or {}
    new = json.loads(json.dumps(dataclasses.asdict(cfg)))
    changed = [k for k in RESUME_KEYS if _get(old, k) != _get(new, k)]
    if changed and not allow:
        diffs = "; ".join(f"{k}: {_get(old, k)!r} -> {_get(new, k)!r}" for k in changed)
        raise UserError(
            f"--resume with changed settings ({diffs}) would jump the schedule mid-run; keep "
            f"{saved}'s values or pass --allow-config-change"
        )


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree

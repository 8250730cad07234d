"""Typed run configuration for ``flexent train`` (YAML + dotted overrides, OmegaConf structured).

One dataclass per section; ``load_config(path, overrides)`` merges defaults, the YAML file and
``key.sub=value`` overrides, and validates everything in one place. Unknown keys and wrong
types raise ``ConfigError`` naming the key (and the file). The ``trainer`` section holds the
training engine's own fields (TRL ``GRPOConfig`` for ``flexent train``); this module imports
no engine, so the engine checks that section through ``trainer_check``:
:func:`flexent.integrations.trl.config.load_config` is ``load_config`` with TRL's check.
Every key is documented in ``docs/training.md``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from flexent.control import EntropyControl
from flexent.errors import UserError
from flexent.thresholds import DynamicThresholds


class ConfigError(UserError):
    """A configuration problem; the message names the key and, when known, the file."""


def read_yaml(path: str | Path, *, error: type[UserError] = ConfigError) -> Any:
    """The YAML document of ``path`` (PyYAML's safe loader), refusing what YAML parsers let
    through or report over several lines, each as one-line ``error`` naming the file:

    - a key given twice in one mapping (PyYAML and OmegaConf silently keep the last: two
      sweep arms of the same name became one): the dotted key and both lines;
    - a file that is not UTF-8 text (a binary file), with the offending byte;
    - a syntax error, with its line and column.

    An empty file is ``None``.
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        bad = err.object[err.start : err.start + 1]
        raise error(
            f"{file}: not a YAML text file (byte {err.start} is {bad!r}, not UTF-8)"
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_duplicate_keys(node, file, error)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{_yaml_where(file, err)}: invalid YAML ({_yaml_problem(err)})") from None


def _check_duplicate_keys(node: Any, file: Path, error: type[UserError], prefix: str = "") -> None:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, file, error, f"{prefix}[{i}]")
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise error(
                f"{file}:{line}: invalid YAML: key {key!r} is given twice (lines "
                f"{seen[key_node.value]} and {line}); YAML would silently keep only the last"
            )
        seen[key_node.value] = line
        _check_duplicate_keys(value_node, file, error, key)


def _yaml_where(file: Path, err: Any) -> str:
    mark = getattr(err, "problem_mark", None)
    return f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)


def _yaml_problem(err: Any) -> str:
    """A YAML error's problem in one line (``str(err)`` spans several, with marks)."""
    problem = getattr(err, "problem", None)
    if problem:
        context = getattr(err, "context", None)
        return f"{context}: {problem}" if context else str(problem)
    return " ".join(str(err).split())


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class ModelConfig:
    path: str = "???"  # local dir, hub name or .gguf file (required)
    gguf_file: str | None = None
    dtype: str = "float32"  # float32 | bfloat16 | float16 | auto
    trust_remote_code: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class DataConfig:
    source: str = "???"  # file, benchmark name, or procedural task (countdown, arithmetic)
    split: str | None = "train"
    prompt_field: str | None = None
    answer_field: str | None = None
    max_samples: int | None = None
    instruction: str | None = None
    system_prompt: str | None = None
    chat: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # extra task kwargs (seed, sizes ...)


@dataclass
class RewardConfig:
    name: str = "???"
    params: dict[str, Any] = field(default_factory=dict)


def _default(cls: Any, name: str) -> Any:
    """A ``field`` whose default is the (YAML-plain) default of ``cls``'s field ``name``: the
    config sections below are the schema of the core dataclasses, with their defaults."""
    value = getattr(cls(), name)
    if isinstance(value, DynamicThresholds):
        return field(default_factory=ThresholdsConfig)
    if isinstance(value, (tuple, list, dict)):
        plain = list(value) if isinstance(value, tuple) else value
        return field(default_factory=lambda: copy.deepcopy(plain))
    return field(default=value)


@dataclass
class ThresholdsConfig:
    """``flexent.thresholds.DynamicThresholds`` (the same keys and defaults, YAML-plain).

    ``upper`` / ``lower``: a float (``fixed``), ``[alpha, beta]`` (``linear``) or a mapping
    ``{family: linear | tv | dcpo | fixed, ...parameters}``, validated by
    ``DynamicThresholds`` when the config loads (docs/losses.md lists the families)."""

    upper: Any = _default(DynamicThresholds, "upper")  # [alpha_u, beta_u], a float, {family: ..}
    lower: Any = _default(DynamicThresholds, "lower")  # [alpha_l, beta_l], a float, {family: ..}
    eps_std: Any = _default(DynamicThresholds, "eps_std")  # a float, or [low, high]
    eps_clamp: list[float] = _default(DynamicThresholds, "eps_clamp")
    mode: str = _default(DynamicThresholds, "mode")


# A threshold side is a float, a pair or a {family: ...} mapping. OmegaConf cannot merge a
# mapping into a list (or back), and merging {family: dcpo} into {family: tv, delta: 0.2} would
# keep tv's delta. So a side given as another kind of value, or as a mapping that names its
# family, replaces the side; a mapping without `family` (`upper.beta=0.4`) updates the current
# side's parameters (a pair read as {family: linear}, a float as {family: fixed}).
THRESHOLD_SIDES = ("entropy_control.thresholds.upper", "entropy_control.thresholds.lower")


def _merge(cfg: Any, src: Any) -> Any:
    """``OmegaConf.merge(cfg, src)`` with the threshold sides handled as described above."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    for key in THRESHOLD_SIDES if isinstance(src, DictConfig) else ():
        new = OmegaConf.select(src, key, default=None)
        if new is None:
            continue
        if not isinstance(new, DictConfig) or "family" in new:
            OmegaConf.update(cfg, key, None, merge=False)
            continue
        old = OmegaConf.select(cfg, key, default=None)
        if isinstance(old, ListConfig) and len(old) == 2:
            as_map = {"family": "linear", "alpha": old[0], "beta": old[1]}
            OmegaConf.update(cfg, key, as_map, merge=False)
        elif isinstance(old, (int, float)) and not isinstance(old, bool):
            OmegaConf.update(cfg, key, {"family": "fixed", "eps": old}, merge=False)
    return OmegaConf.merge(cfg, src)


@dataclass
class EntropyControlConfig:
    """``flexent.control.EntropyControl`` (the same keys and defaults, YAML-plain)."""

    strategy: str = _default(EntropyControl, "strategy")
    strategy_params: dict[str, Any] = _default(EntropyControl, "strategy_params")
    thresholds: ThresholdsConfig = _default(EntropyControl, "thresholds")
    loss: str = _default(EntropyControl, "loss")
    loss_params: dict[str, Any] = _default(EntropyControl, "loss_params")
    region_schemes: list[str] = _default(EntropyControl, "region_schemes")
    on_inert: str = _default(EntropyControl, "on_inert")
    entropy_coef: float = _default(EntropyControl, "entropy_coef")
    log_pred_dh_full: bool = _default(EntropyControl, "log_pred_dh_full")
    adaptive_entropy: dict[str, Any] = _default(EntropyControl, "adaptive_entropy")
    advantage: dict[str, Any] = _default(EntropyControl, "advantage")


@dataclass
class EvaluationConfig:
    enabled: bool = True
    source: str | None = None  # default: data.source
    split: str | None = "test"
    max_samples: int | None = 100
    params: dict[str, Any] = field(default_factory=dict)  # task kwargs, default data.params
    num_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None  # default: trainer.max_completion_length
    batch_size: int = 32
    at_start: bool = True  # also evaluate the initial model
    steps: list[int] = field(default_factory=list)  # also evaluate at these optimizer steps


@dataclass
class OutputConfig:
    dir: str = "runs/flexent"
    save_final_model: bool = True


@dataclass
class FlexentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # the engine's (TRL GRPOConfig fields)
    entropy_control: EntropyControlConfig = field(default_factory=EntropyControlConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


CHOICES = {"model.dtype": ("float32", "bfloat16", "float16", "auto")}

# An engine's check of the `trainer` section: (section, " in FILE" or "") -> None, raising
# ConfigError naming `trainer.<key>` and the file.
TrainerCheck = Callable[[dict[str, Any], str], None]


def load_config(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    trainer_check: TrainerCheck | None = None,
) -> FlexentConfig:
    """Defaults <- YAML file ``path`` (optional) <- dotted ``overrides`` -> validated config;
    ``trainer_check`` validates the ``trainer`` section (the engine's fields)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    where = f" in {path}" if path else ""

    def merged(cfg: Any, load: Callable[[], Any], source: str) -> Any:
        """``cfg`` merged with ``load()``; an OmegaConf error names the key and ``source``
        (the file, or the override that set the key)."""
        try:
            return _merge(cfg, load())
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None)
            msg = str(err).splitlines()[0]
            raise ConfigError(f"config key {key!r}{source}: {msg}") from None

    cfg = OmegaConf.structured(FlexentConfig)
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file not found: {path}")
        data = read_yaml(path)
        if data is not None and not isinstance(data, dict):
            raise ConfigError(
                f"{path}: a config file must be a mapping of sections (model:, data:, reward:, "
                f"trainer:, ...), not a {type(data).__name__}"
            )
        cfg = merged(cfg, partial(OmegaConf.load, path), where)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
    for item in overrides:  # one at a time: a later threshold side replaces an earlier one
        cfg = merged(cfg, partial(OmegaConf.from_dotlist, [item]), f" (override {item})")
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(f"required config keys not set{where}: {', '.join(missing)}")
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        msg = str(err).splitlines()[0]
        raise ConfigError(f"config key {key!r}{where}: {msg}") from None
    assert isinstance(obj, FlexentConfig)
    try:
        validate(obj, where=where, trainer_check=trainer_check)
    except ConfigError as err:
        raise ConfigError(_blame_override(str(err), where, overrides)) from None
    return obj


def _blame_override(message: str, where: str, overrides: list[str] | tuple[str, ...]) -> str:
    """``trainer.x in cfg.yaml ...`` -> ``trainer.x (override trainer.x=1) ...`` when an
    override set that key: the message then points at the command line, not the file.

    >>> _blame_override("trainer.lr in a.yaml is bad", " in a.yaml", ["trainer.lr=1"])
    'trainer.lr (override trainer.lr=1) is bad'
    """
    for item in reversed(overrides):
        key = item.partition("=")[0].strip()
        if key and message.startswith(f"{key}{where}"):
            return f"{key} (override {item}){message[len(key) + len(where) :]}"
    return message


def validate(
    cfg: FlexentConfig, *, where: str = "", trainer_check: TrainerCheck | None = None
) -> None:
    """Cross-field checks that a schema cannot express; raises ConfigError naming the key."""
    for key, choices in CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}{where} must be one of {list(choices)}, got {value!r}")
    if trainer_check is not None:
        trainer_check(cfg.trainer, where)
    _validate_ranges(cfg, where)
    try:
        entropy_control(cfg)
    except ValueError as err:
        key, _, problem = str(err).partition(": ")
        raise ConfigError(f"entropy_control.{key}{where}: {problem}") from None


# key -> (lowest allowed value, whether it is exclusive, whether null is allowed)
RANGES: dict[str, tuple[float, bool, bool]] = {
    "data.max_samples": (1, False, True),
    "evaluation.max_samples": (1, False, True),
    "evaluation.num_samples": (1, False, False),
    "evaluation.batch_size": (1, False, False),
    "evaluation.temperature": (0.0, False, False),
    "evaluation.top_p": (0.0, True, False),
    "evaluation.top_k": (0, False, False),
    "evaluation.max_new_tokens": (1, False, True),
    "trainer.max_steps": (1, False, True),
    "trainer.learning_rate": (0.0, True, True),
    "trainer.per_device_train_batch_size": (1, False, True),
    "trainer.num_generations": (1, False, True),
    "trainer.max_completion_length": (1, False, True),
    "trainer.steps_per_generation": (1, False, True),
    "trainer.num_iterations": (1, False, True),
    "trainer.gradient_accumulation_steps": (1, False, True),
}


def _validate_ranges(cfg: FlexentConfig, where: str) -> None:
    """Numbers that have to be positive (or at least 0), and ``evaluation.steps``."""
    for key, (low, exclusive, nullable) in RANGES.items():
        section, name = key.split(".")
        obj = getattr(cfg, section)
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name)
        if value is None and (nullable or isinstance(obj, dict)):
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (value <= low if exclusive else value < low)
        ):
            sign = ">" if exclusive else ">="
            hint = " (omit it to train for num_train_epochs)" if key == "trainer.max_steps" else ""
            raise ConfigError(f"{key}{where} must be {sign} {low}{hint}, got {value!r}")
    if cfg.evaluation.top_p > 1.0:
        raise ConfigError(f"evaluation.top_p{where} must be <= 1, got {cfg.evaluation.top_p!r}")
    max_steps = cfg.trainer.get("max_steps")
    for step in cfg.evaluation.steps:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"evaluation.steps{where} must hold steps >= 1, got {step!r}")
        if isinstance(max_steps, int) and step > max_steps:
            raise ConfigError(
                f"evaluation.steps{where}: step {step} is after trainer.max_steps={max_steps}"
            )


def entropy_control(cfg: FlexentConfig) -> EntropyControl:
    """The validated :class:`flexent.control.EntropyControl` of the config's section."""
    ec = dataclasses.asdict(cfg.entropy_control)
    return EntropyControl(**{**ec, "region_schemes": tuple(ec["region_schemes"])})


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def save_config(cfg: FlexentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (``load_config(path)`` reads it back)."""
    from omegaconf import OmegaConf

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(cfg), str(path))

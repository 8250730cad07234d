"""One registry for rewards: built-in names plus user rewards by dotted import path."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flexent.rewards.base import Reward, RewardResult

# The built-ins register themselves when ``flexent.rewards`` (the package, which always runs
# before this module is reachable) imports their modules; this module imports none of them.
_REGISTRY: dict[str, type[Reward]] = {}


def register_reward(name: str) -> Callable[[type[Reward]], type[Reward]]:
    """Class decorator: make ``get_reward(name, **params)`` build ``cls(**params)``."""

    def decorate(cls: type[Reward]) -> type[Reward]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"reward {name!r} is already registered ({_REGISTRY[name]!r})")
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_rewards() -> list[str]:
    """Names of the built-in rewards.

    >>> list_rewards()
    ['arithmetic', 'countdown', 'format', 'math']
    """
    return sorted(_REGISTRY)


def get_reward(name: str, **params: Any) -> Reward:
    """A reward by registered name, or a user reward by import path.

    ``"pkg.mod:obj"`` or ``"pkg.mod.obj"`` may name a :class:`Reward` subclass (built with
    ``params``), a reward object, or a plain TRL-style function
    ``fn(completions, **columns) -> list[float | None]`` (wrapped so it also has ``score``).

    >>> get_reward("format", style="boxed", weight=0.5)([r"\\boxed{1}", "1"])
    [0.5, 0.0]
    """
    if name in _REGISTRY:
        return _REGISTRY[name](**params)
    if ":" not in name and "." not in name:
        raise ValueError(
            f"unknown reward {name!r}; registered rewards: {sorted(_REGISTRY)} "
            "(or give a dotted import path 'pkg.module:object')"
        )
    obj = _import_object(name)
    if inspect.isclass(obj):
        built = obj(**params)
        if isinstance(built, Reward):
            return built
        if not callable(built):
            raise ValueError(f"reward {name!r} built a non-callable {type(built).__name__}")
        return FunctionReward(built, name=name)
    if params:
        raise ValueError(f"reward {name!r} is not a class, so it takes no parameters; got {params}")
    return obj if isinstance(obj, Reward) else FunctionReward(obj, name=name)


def _import_object(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"reward {path!r}: cannot import module {module_name!r}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"reward {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"reward {path!r} is not callable (got {type(obj).__name__})")
    return obj


class FunctionReward(Reward):
    """Adapts a TRL-style reward function: ``score`` calls it on a batch of one.

    Its columns are unknown: :attr:`columns` is ``()``, so ``missing_columns`` finds none.
    """

    columns: tuple[str, ...] = ()

    def __init__(self, fn: Callable[..., Sequence[float | None]], *, name: str) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", name)
        super().__init__()

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return list(self.fn(completions, **columns))

    def score(self, completion: Any, example: Mapping[str, Any]) -> RewardResult:
        (value,) = self.fn([completion], **{k: [v] for k, v in example.items()})
        return RewardResult(None if value is None else float(value), {})

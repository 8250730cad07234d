"""Verifiable rewards: ``get_reward(name, **params)`` -> a TRL-style callable with ``score``.

Built-in names: ``math`` (math-verify, hard timeout), ``countdown``, ``arithmetic``, ``format``;
a dotted import path (``pkg.mod:obj``) loads a user reward. See docs/tasks.md.
"""

# The built-in rewards register themselves when their modules are imported, here: anything
# that reaches the registry has run this package first.
from flexent.rewards import arithmetic, countdown, format, math_reward  # noqa: F401
from flexent.rewards.base import Reward, RewardResult, completion_text
from flexent.rewards.registry import FunctionReward, get_reward, list_rewards, register_reward

__all__ = [
    "FunctionReward",
    "Reward",
    "RewardResult",
    "completion_text",
    "get_reward",
    "list_rewards",
    "register_reward",
]

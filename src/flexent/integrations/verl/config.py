"""``FlexentPolicyLossConfig``: verl's ``PolicyLossConfig`` plus flexent's settings.

Selected with Hydra overrides only (new keys need Hydra's ``+`` because verl's config is
struct)::

    actor_rollout_ref.actor.policy_loss._target_=flexent.integrations.verl.FlexentPolicyLossConfig
    actor_rollout_ref.actor.policy_loss.loss_mode=flexent_ppo_clip
    +actor_rollout_ref.actor.policy_loss.strategy=id

verl builds the actor config with ``hydra.utils.instantiate`` in every worker, so this class's
``__post_init__`` runs there and on the driver: every value is checked once, with the full
Hydra key in the message, before a GPU is touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
from verl.workers.config import ActorConfig, PolicyLossConfig

from flexent.losses import get_policy_loss, list_policy_losses, loss_param_names
from flexent.strategies import Dynamic, Static, get_strategy
from flexent.thresholds import DynamicThresholds

KEY = "actor_rollout_ref.actor.policy_loss"
PREFIX = "flexent_"
# Loss parameters the adapter supplies itself (from verl's config or its own state).
_ADAPTER_PARAMS = {"generator"}
# flexent loss parameter -> (section, key) of verl's own setting, the fallback when
# ``loss_params`` lacks the parameter. Section "policy_loss" is ``actor.policy_loss``.
VERL_PARAM_KEYS: dict[str, tuple[str, str]] = {
    "clip_c": ("actor", "clip_ratio_c"),
    "clip_cov_ratio": ("policy_loss", "clip_cov_ratio"),
    "clip_cov_lb": ("policy_loss", "clip_cov_lb"),
    "clip_cov_ub": ("policy_loss", "clip_cov_ub"),
    "kl_cov_ratio": ("policy_loss", "kl_cov_ratio"),
    "kl_coef": ("policy_loss", "ppo_kl_coef"),
    "tau_pos": ("actor", "tau_pos"),
    "tau_neg": ("actor", "tau_neg"),
}
_VERL_DEFAULTS = {
    "actor": {f.name: f.default for f in dataclasses.fields(ActorConfig)},
    "policy_loss": {f.name: f.default for f in dataclasses.fields(PolicyLossConfig)},
}


def flexent_loss_name(loss_mode: str) -> str:
    """``flexent_ppo_clip`` -> ``ppo_clip``; a name without the prefix is an error."""
    if not isinstance(loss_mode, str) or not loss_mode.startswith(PREFIX):
        raise ValueError(
            f"{KEY}.loss_mode={loss_mode!r} is not a flexent loss; valid: "
            f"{', '.join(PREFIX + n for n in list_policy_losses())}"
        )
    return loss_mode[len(PREFIX) :]


def _resolve(name: str, params: dict, owners: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus verl's values for the accepted parameters it lacks (see
    :func:`verl_loss_params`); ``owners`` maps a section to the config object holding it."""
    out = dict(params)
    accepted = loss_param_names(get_policy_loss(name))
    for param, (section, key) in VERL_PARAM_KEYS.items():
        owner = owners.get(section)
        value = None if owner is None else getattr(owner, key, None)
        if param not in accepted or value is None:
            continue
        if param not in out:
            out[param] = value
        elif value != _VERL_DEFAULTS[section].get(key) and value != out[param]:
            where = "actor" if section == "actor" else f"actor.{section}"
            raise ValueError(
                f"actor_rollout_ref.{where}.{key}={value!r} and {KEY}.loss_params.{param}="
                f"{out[param]!r} disagree; set one of them (flexent_{name} reads verl's key "
                "when loss_params lacks it)"
            )
    return out


def verl_loss_params(name: str, actor_config: Any) -> dict[str, Any]:
    """Keyword parameters of flexent loss ``name`` for verl's actor config.

    ``policy_loss.loss_params`` first; for a parameter it lacks, verl's own key
    (:data:`VERL_PARAM_KEYS`: ``clip_ratio_c``, ``clip_cov_ratio/lb/ub``, ``kl_cov_ratio``,
    ``ppo_kl_coef``, ``tau_pos``, ``tau_neg``). Both given and different is a ``ValueError``;
    verl's key counts as given when it differs from verl's default (a config cannot tell an
    explicit default from an untouched one).
    """
    pl = actor_config.policy_loss
    params = dict(getattr(pl, "loss_params", None) or {})
    return _resolve(name, params, {"actor": actor_config, "policy_loss": pl})


def config_warnings(actor_config: Any, loss_agg_mode: str | None = None) -> list[str]:
    """Settings that run but probably do not mean what the user wants (one message each).

    - ``flexent_sapo`` aggregates with ``actor.loss_agg_mode`` (or ``loss_agg_mode``), while
      verl's ``sapo`` forces ``seq-mean-token-mean`` (the SAPO paper's); another mode is kept,
      with this warning.
    - ``flexent_gspo`` clips the sequence ratio, whose band is about 1e-4 wide (3e-4 / 4e-4 in
      the GSPO paper); token-level clip ratios (verl's 0.2 default) barely ever clip it.
    """
    pl = actor_config.policy_loss
    mode = getattr(pl, "loss_mode", "")
    agg = loss_agg_mode or actor_config.loss_agg_mode
    out = []
    if mode == PREFIX + "sapo" and agg != "seq-mean-token-mean":
        out.append(
            f"flexent_sapo aggregates with loss_agg_mode={agg!r}; verl's sapo (and the SAPO "
            "paper) use seq-mean-token-mean: set actor_rollout_ref.actor.loss_agg_mode="
            "seq-mean-token-mean to match them"
        )
    if mode == PREFIX + "gspo":
        clip = actor_config.clip_ratio
        low = actor_config.clip_ratio_low if actor_config.clip_ratio_low is not None else clip
        high = actor_config.clip_ratio_high if actor_config.clip_ratio_high is not None else clip
        eps_std = getattr(pl, "eps_std", None)
        low, high = (low, high) if eps_std is None else (eps_std, eps_std)
        if max(float(low), float(high)) > 1e-2:
            out.append(
                f"flexent_gspo clips the sequence ratio, but eps_low/eps_high = {low}/{high} are "
                "token-level values that almost never clip it: set actor_rollout_ref.actor."
                "clip_ratio_low=3e-4 and clip_ratio_high=4e-4 (the GSPO paper's)"
            )
    return out


def check_registered(loss_mode: str) -> None:
    """Fail loudly when a ``flexent_*`` loss is missing from verl's registry.

    verl loads plugins in ``import verl`` and logs a failing one at debug level only, so a broken
    install would otherwise surface as verl's generic "Unsupported loss mode".
    """
    if loss_mode.startswith(PREFIX) and loss_mode not in POLICY_LOSS_REGISTRY:
        have = sorted(n for n in POLICY_LOSS_REGISTRY if n.startswith(PREFIX))
        raise RuntimeError(
            f"{KEY}.loss_mode={loss_mode!r} is not in verl's policy-loss registry (flexent names "
            f"registered: {have or 'none'}). The flexent verl plugin did not load: check that "
            "flexent is installed in this environment (`pip install flexent[verl]`), that "
            "VERL_USE_EXTERNAL_PLUGINS is not 'none', or set "
            "VERL_USE_EXTERNAL_MODULES=flexent.integrations.verl and run "
            "`python -c 'import flexent.integrations.verl'` to see the import error."
        )


@dataclass
class FlexentPolicyLossConfig(PolicyLossConfig):
    """verl ``policy_loss`` section for flexent's losses (all keys under ``{KEY}``).

    Args:
        loss_mode: ``flexent_<name>`` for a flexent loss (``ppo_clip``, ``ce_gppo``,
            ``clip_cov``, ``kl_cov``, ``gspo``, ``sapo``); verl's own names also work.
        strategy: ``static`` | ``dynamic`` | ``id`` | ``did`` | ``od`` | ``target``.
        strategy_params: keyword parameters of the strategy besides ``total_steps``
            (e.g. ``{phase_ratio: 0.5}``).
        total_steps: T of the schedule; None = the trainer's ``total_training_steps``.
        upper / lower: ``[alpha, beta]`` of H(p) / M(p), or a float = fixed eps.
        eps_std: the static eps mixed in with weight 1 - w; None = verl's
            ``actor.clip_ratio_high`` for the upper side and ``actor.clip_ratio_low`` for the
            lower side (both 0.2 by default, the paper's eps_std).
        eps_clamp: ``[eps_min, eps_max]`` for the probability-dependent values.
        threshold_mode: ``implicit`` | ``old`` | ``detached``.
        loss_params: extra keyword parameters of the flexent loss (e.g. ``{beta1: 0.5}``);
            a parameter verl also has falls back to verl's key (:func:`verl_loss_params`).
        seed: seed of the generator of randomised losses (``clip_cov``), re-seeded at each
            step from (seed, rank, step) (:func:`flexent.integrations.verl.loss.step_seed`).
        region_scheme: ``theory`` | ``empirical`` | ``both`` | ``none`` for the E1..E4
            metrics (computed when the batch carries pi_old's per-token entropy).
    """

    loss_mode: str = "flexent_ppo_clip"
    strategy: str = "static"
    strategy_params: dict = field(default_factory=dict)
    total_steps: int | None = None
    upper: Any = field(default_factory=lambda: [-0.25, 0.5])
    lower: Any = field(default_factory=lambda: [-0.13, 0.3])
    eps_std: float | None = None
    eps_clamp: Any = field(default_factory=lambda: [0.05, 0.6])
    threshold_mode: str = "implicit"
    loss_params: dict = field(default_factory=dict)
    seed: int = 0
    region_scheme: str = "theory"

    def __post_init__(self) -> None:
        self._check_loss()
        self.thresholds(eps_std=0.2 if self.eps_std is None else self.eps_std)
        self.build_strategy(total_steps=self.total_steps or 1)
        if self.region_scheme not in ("theory", "empirical", "both", "none"):
            raise ValueError(
                f"{KEY}.region_scheme must be theory|empirical|both|none, got {self.region_scheme!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"{KEY}.seed must be an int, got {self.seed!r}")
        if self.total_steps is not None and (
            isinstance(self.total_steps, bool)
            or not isinstance(self.total_steps, int)
            or self.total_steps <= 0
        ):
            raise ValueError(
                f"{KEY}.total_steps must be a positive int or null, got {self.total_steps!r}"
            )

    def _check_loss(self) -> None:
        if not self.loss_mode.startswith(PREFIX):
            if self.strategy != "static":
                raise ValueError(
                    f"{KEY}.strategy={self.strategy!r} needs a flexent loss "
                    f"(loss_mode=flexent_*), got loss_mode={self.loss_mode!r}"
                )
            return
        check_registered(self.loss_mode)
        if self.loss_mode == PREFIX + "gspo" and self.strategy != "static":
            raise ValueError(
                f"{KEY}.strategy={self.strategy!r} with loss_mode=flexent_gspo: flexent's "
                "thresholds are per token but GSPO clips one ratio per sequence, so only "
                "strategy=static is allowed (with actor.clip_ratio_low=3e-4, clip_ratio_high=4e-4)"
            )
        fn = get_policy_loss(flexent_loss_name(self.loss_mode))
        if not isinstance(self.loss_params, Mapping):
            raise ValueError(f"{KEY}.loss_params must be a mapping, got {self.loss_params!r}")
        accepted = set(loss_param_names(fn)) - _ADAPTER_PARAMS
        unknown = sorted(set(self.loss_params) - accepted)
        if unknown:
            raise ValueError(
                f"{KEY}.loss_params has unknown key(s) {unknown} for {self.loss_mode!r}; "
                f"accepted: {sorted(accepted)}"
            )
        # conflicts with this section's verl keys now; actor-level keys when the loss runs
        _resolve(flexent_loss_name(self.loss_mode), dict(self.loss_params), {"policy_loss": self})

    def thresholds(self, *, eps_std: float | tuple[float, float]) -> DynamicThresholds:
        """The :class:`DynamicThresholds` of this config with the given ``eps_std``.

        ``eps_std`` is a float or a ``(low, high)`` pair (verl's ``clip_ratio_low/high``).
        """
        try:
            return DynamicThresholds.from_dict(
                {
                    "upper": _plain(self.upper),
                    "lower": _plain(self.lower),
                    "eps_std": eps_std,
                    "eps_clamp": _plain(self.eps_clamp),
                    "mode": self.threshold_mode,
                }
            )
        except ValueError as err:
            raise ValueError(f"{KEY}: {err}") from None

    def build_strategy(self, *, total_steps: int) -> Any:
        """A fresh strategy object for a run of ``total_steps`` steps."""
        if not isinstance(self.strategy_params, Mapping):
            raise ValueError(
                f"{KEY}.strategy_params must be a mapping, got {self.strategy_params!r}"
            )
        try:
            return get_strategy(
                self.strategy, total_steps=total_steps, **dict(self.strategy_params)
            )
        except (ValueError, TypeError) as err:
            raise ValueError(f"{KEY}.strategy: {err}") from None

    @property
    def step_free(self) -> bool:
        """True when the weights do not depend on the step (no trainer support needed)."""
        return isinstance(self.build_strategy(total_steps=1), (Static, Dynamic))


def _plain(value: Any) -> Any:
    """OmegaConf ListConfig / tuples -> plain lists (floats pass through)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [float(v) if isinstance(v, (int, float)) else v for v in value]
    return value

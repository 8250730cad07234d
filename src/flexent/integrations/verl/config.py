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
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
from verl.workers.config import ActorConfig, PolicyLossConfig

from flexent.control import EntropyControl
from flexent.losses import list_policy_losses, loss_traits, user_param_names
from flexent.strategies import Strategy, strategy_class
from flexent.thresholds import DynamicThresholds

KEY = "actor_rollout_ref.actor.policy_loss"
PREFIX = "flexent_"
_DEFAULTS = EntropyControl()  # the one source of the defaults below
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
    "dro_beta": ("policy_loss", "dro_beta"),
}
_VERL_DEFAULTS = {
    "actor": {f.name: f.default for f in dataclasses.fields(ActorConfig)},
    "policy_loss": {f.name: f.default for f in dataclasses.fields(PolicyLossConfig)},
}


def verl_losses() -> list[str]:
    """The flexent losses verl can run: all but those needing pi_old's logits (``clip_v``),
    which verl's loss never sees."""
    return [n for n in list_policy_losses() if not loss_traits(n).needs_old_second_term]


def is_flexent_loss(loss_mode: Any) -> bool:
    """Whether verl's ``loss_mode`` names a flexent loss that verl can run (a registry look-up).

    >>> is_flexent_loss("flexent_ppo_clip"), is_flexent_loss("vanilla")
    (True, False)
    """
    return isinstance(loss_mode, str) and loss_mode in {PREFIX + n for n in verl_losses()}


def flexent_loss_name(loss_mode: str) -> str:
    """``flexent_ppo_clip`` -> ``ppo_clip``; a name that is not a flexent loss verl can run is
    an error (a TRL-only loss says so)."""
    if not is_flexent_loss(loss_mode):
        name = loss_mode[len(PREFIX) :] if isinstance(loss_mode, str) else ""
        if name and loss_mode.startswith(PREFIX) and name in list_policy_losses():
            raise ValueError(
                f"{KEY}.loss_mode={loss_mode!r}: flexent's {name} needs pi_old's logits (its "
                "second term), which verl's loss never sees; it runs with TRL only"
            )
        raise ValueError(
            f"{KEY}.loss_mode={loss_mode!r} is not a flexent loss; valid: "
            f"{', '.join(PREFIX + n for n in verl_losses())}"
        )
    return loss_mode[len(PREFIX) :]


def _resolve(name: str, params: dict, owners: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus verl's values for the accepted parameters it lacks (see
    :func:`verl_loss_params`); ``owners`` maps a section to the config object holding it."""
    out = dict(params)
    accepted = user_param_names(name)
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


def std_eps_pair(actor_config: Any) -> tuple[float, float]:
    """The static ``(eps_low, eps_high)``: ``policy_loss.thresholds.eps_std`` when set (a float
    or a pair), else verl's ``actor.clip_ratio_low`` / ``clip_ratio_high`` (``clip_ratio`` when
    those are null)."""
    eps_std = dict(getattr(actor_config.policy_loss, "thresholds", None) or {}).get("eps_std")
    if eps_std is None:
        clip = actor_config.clip_ratio
        low, high = actor_config.clip_ratio_low, actor_config.clip_ratio_high
        return float(clip if low is None else low), float(clip if high is None else high)
    if isinstance(eps_std, (int, float)):
        return float(eps_std), float(eps_std)
    low, high = _plain(eps_std)
    return float(low), float(high)


def config_warnings(actor_config: Any, loss_agg_mode: str | None = None) -> list[str]:
    """Settings that run but probably do not mean what the user wants (one message each), from
    the loss's traits (:meth:`flexent.control.EntropyControl.check_aggregation` and
    ``check_eps_scale``): e.g. ``flexent_sapo`` aggregated with another mode than the SAPO
    paper's ``seq-mean-token-mean`` (verl's ``sapo`` forces it; flexent keeps
    ``actor.loss_agg_mode`` and warns), or ``flexent_gspo`` with token-level clip ratios."""
    pl = actor_config.policy_loss
    if not isinstance(pl, FlexentPolicyLossConfig) or not is_flexent_loss(pl.loss_mode):
        return []
    control = pl.control(eps_std=std_eps_pair(actor_config))
    agg = loss_agg_mode or actor_config.loss_agg_mode
    out = [
        f"{PREFIX}{m} (actor_rollout_ref.actor.loss_agg_mode)"
        for m in control.check_aggregation(agg)
    ]
    out += [
        f"{PREFIX}{m} (actor_rollout_ref.actor.clip_ratio_low / clip_ratio_high)"
        for m in control.check_eps_scale(*std_eps_pair(actor_config))
    ]
    return out


def current_entropy_users(actor_config: Any) -> list[str]:
    """The settings of the actor's flexent loss that read the current policy's per-token entropy
    from the update's model output: a loss whose traits ask for it (``archer``),
    ``top_entropy_quantile < 1`` and a flexent entropy bonus (one phrase each, [] = none)."""
    pl = actor_config.policy_loss
    if not is_flexent_loss(pl.loss_mode):
        return []
    section = section_of(actor_config)
    users = []
    if loss_traits(flexent_loss_name(pl.loss_mode)).needs_entropy:
        users.append(f"loss_mode={pl.loss_mode}")
    if section.top_entropy_quantile < 1.0:
        users.append(f"top_entropy_quantile={section.top_entropy_quantile}")
    if section.uses_bonus:
        users.append("a flexent entropy bonus (entropy_coef / adaptive_entropy / a bonus actuator)")
    return users


def check_entropy(actor_config: Any) -> None:
    """The current policy's entropy is in the model output wherever a setting reads it
    (:func:`current_entropy_users`): verl computes it in the actor update only with
    ``actor.calculate_entropy=true`` (or its own bonus, ``actor.entropy_coeff != 0``); and a
    flexent entropy bonus is not added twice (``actor.entropy_coeff`` must then be 0). Raises
    ``ValueError`` naming the key."""
    users = current_entropy_users(actor_config)
    coeff = float(actor_config.entropy_coeff)
    if section_of(actor_config).uses_bonus and coeff != 0.0:
        raise ValueError(
            f"{KEY} sets a flexent entropy bonus (entropy_coef / adaptive_entropy / a bonus "
            f"actuator) and actor_rollout_ref.actor.entropy_coeff={actor_config.entropy_coeff} "
            "adds verl's own: set actor_rollout_ref.actor.entropy_coeff=0"
        )
    computed = bool(getattr(actor_config, "calculate_entropy", False)) or coeff != 0.0
    if users and not computed:
        raise ValueError(
            f"{KEY}: {' and '.join(users)} need{'s' if len(users) == 1 else ''} the current "
            "policy's per-token entropy, which verl computes in the actor update only with "
            "actor_rollout_ref.actor.calculate_entropy=true: set it"
        )


def check_registered(loss_mode: str) -> None:
    """Fail loudly when a ``flexent_*`` loss is missing from verl's registry.

    verl loads plugins in ``import verl`` and logs a failing one at debug level only, so a broken
    install would otherwise surface as verl's generic "Unsupported loss mode".
    """
    if loss_mode.startswith(PREFIX) and loss_mode[len(PREFIX) :] in list_policy_losses():
        flexent_loss_name(loss_mode)  # a TRL-only loss is its own one-line error
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

    The keys are those of :class:`flexent.control.EntropyControl` (``flexent train``'s
    ``entropy_control`` section), with the same defaults; verl's ``loss_mode`` names the loss.

    Args:
        loss_mode: ``flexent_<name>`` for a flexent loss (any name of :func:`verl_losses`:
            every flexent loss but ``clip_v``); verl's own names also work.
        strategy: ``static`` | ``dynamic`` | ``id`` | ``did`` | ``od`` | ``target`` |
            ``aepo`` | ``repo_r`` (all but the first two need ``trainer_mode=flexent_sync``).
        strategy_params: keyword parameters of the strategy (e.g. ``{phase_ratio: 0.5}``);
            ``total_steps`` defaults to the trainer's ``total_training_steps``.
        thresholds: ``DynamicThresholds`` keys (``upper``, ``lower``, ``eps_std``,
            ``eps_clamp``, ``mode``); ``eps_std`` unset = verl's ``actor.clip_ratio_low`` for
            the lower side and ``actor.clip_ratio_high`` for the upper side (:func:`std_eps_pair`).
        loss_params: extra keyword parameters of the flexent loss (e.g. ``{beta1: 0.5}``);
            a parameter verl also has falls back to verl's key (:func:`verl_loss_params`).
        region_schemes: E1..E4 classifications logged (``theory``, ``empirical``; [] = none),
            computed when the batch carries pi_old's per-token entropy.
        on_inert: ``error`` | ``warn`` | ``ignore`` when each rollout batch feeds exactly one
            optimizer step (clipping, hence every strategy, is inert).
        seed: seed of the generator of randomised losses (``clip_cov``), re-seeded at each
            step from (seed, rank, step) (:func:`flexent.control.step_seed`).
        top_entropy_quantile: train only on the top fraction of tokens by entropy (1.0 = all;
            arXiv 2506.01939, TRL's setting of the same name), with any loss. Below 1 it needs
            ``trainer_mode=flexent_sync`` and ``actor.calculate_entropy=true``.
        entropy_coef: flexent's entropy-bonus coefficient c_H (``loss - c_H * H`` with the
            current policy's token entropy, aggregated as verl's ``actor.entropy_coeff`` bonus);
            with ``adaptive_entropy``, its initial value. Needs ``trainer_mode=flexent_sync``,
            ``actor.calculate_entropy=true`` and ``actor.entropy_coeff=0``.
        adaptive_entropy: ``{target, delta, min, max}``: Skywork-OR1's adaptive coefficient
            (:class:`flexent.strategies.adaptive.AdaptiveEntropyCoef`), driven on the driver by
            the step's rollout entropy and checkpointed with the strategy; ``{}`` = off.
    """

    loss_mode: str = "flexent_ppo_clip"
    strategy: str = _DEFAULTS.strategy
    strategy_params: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    loss_params: dict = field(default_factory=dict)
    region_schemes: list = field(default_factory=lambda: list(_DEFAULTS.region_schemes))
    on_inert: str = _DEFAULTS.on_inert
    seed: int = 0
    top_entropy_quantile: float = 1.0
    entropy_coef: float = _DEFAULTS.entropy_coef
    adaptive_entropy: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"{KEY}.seed must be an int, got {self.seed!r}")
        top = self.top_entropy_quantile
        if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0.0 < top <= 1.0:
            raise ValueError(f"{KEY}.top_entropy_quantile must lie in (0, 1], got {top!r}")
        for name in ("strategy_params", "thresholds", "loss_params", "adaptive_entropy"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{KEY}.{name} must be a mapping, got {getattr(self, name)!r}")
        check_registered(self.loss_mode)  # a flexent_* name that is not registered
        if not is_flexent_loss(self.loss_mode):
            if not strategy_class(self.strategy).always_std:
                raise ValueError(
                    f"{KEY}.strategy={self.strategy!r} needs a flexent loss "
                    f"(loss_mode=flexent_*), got loss_mode={self.loss_mode!r}"
                )
            return
        self.control(eps_std=0.2)  # every value, with its key (cached: built once per eps_std)
        # conflicts with this section's verl keys now; actor-level keys when the loss runs
        _resolve(flexent_loss_name(self.loss_mode), dict(self.loss_params), {"policy_loss": self})

    def control(self, *, eps_std: float | tuple[float, float]) -> EntropyControl:
        """The validated :class:`flexent.control.EntropyControl` of this section, with
        ``eps_std`` (verl's clip ratios, :func:`std_eps_pair`) unless ``thresholds`` sets it.

        Built and validated once per process and ``eps_std`` (the loss asks at every
        micro-batch), then kept on the config object."""
        low, high = (eps_std, eps_std) if isinstance(eps_std, (int, float)) else eps_std
        key = (float(low), float(high))
        cache = self.__dict__.setdefault("_flexent_controls", {})
        if key not in cache:
            cache[key] = self._build_control(key)
        return cache[key]  # type: ignore[no-any-return]

    def _build_control(self, eps_std: tuple[float, float]) -> EntropyControl:
        thresholds = {k: _plain(v) for k, v in dict(self.thresholds).items()}
        thresholds.setdefault("eps_std", list(eps_std))
        try:
            return EntropyControl(
                strategy=self.strategy,
                strategy_params=dict(self.strategy_params),
                thresholds=thresholds,
                loss=(
                    flexent_loss_name(self.loss_mode)
                    if is_flexent_loss(self.loss_mode)
                    else _DEFAULTS.loss  # verl's own loss: only the strategy is used
                ),
                loss_params=dict(self.loss_params),
                region_schemes=tuple(self.region_schemes),
                on_inert=self.on_inert,
                entropy_coef=self.entropy_coef,
                adaptive_entropy={k: _plain(v) for k, v in dict(self.adaptive_entropy).items()},
            )
        except ValueError as err:
            raise ValueError(f"{KEY}.{err}") from None

    def thresholds_for(self, eps_std: tuple[float, float]) -> DynamicThresholds:
        """The :class:`DynamicThresholds` of this config with verl's static ``eps_std``."""
        return self.control(eps_std=eps_std).thresholds  # type: ignore[no-any-return]

    def build_strategy(self, *, total_steps: int) -> Strategy:
        """A fresh strategy object for a run of ``total_steps`` steps (unless
        ``strategy_params.total_steps`` fixes it); verl's own losses run with the default
        strategy (thresholds at verl's clip ratios)."""
        return self.control(eps_std=0.2).build_strategy(total_steps)

    @property
    def uses_bonus(self) -> bool:
        """Whether flexent adds an entropy bonus: ``entropy_coef`` != 0, ``adaptive_entropy``,
        or a strategy that drives one (``target`` with ``actuator: cascade | bonus``)."""
        if not is_flexent_loss(self.loss_mode):
            return False
        return bool(self.entropy_coef or self.adaptive_entropy or self._traits_probe().uses_bonus)

    @property
    def shapes_advantages(self) -> bool:
        """Whether the strategy shapes the advantages (the loss-weight controllers ``aepo``,
        ``repo_r``, ``target`` with ``actuator: entropic``): the driver must deliver it."""
        if not is_flexent_loss(self.loss_mode):
            return False
        return bool(self._traits_probe().shapes_advantages)

    def _traits_probe(self) -> Strategy:
        """A strategy built once per process to read its traits (``uses_bonus``,
        ``shapes_advantages``) from; never stepped."""
        cache = self.__dict__
        if "_flexent_traits_probe" not in cache:
            cache["_flexent_traits_probe"] = self.build_strategy(total_steps=1)
        return cache["_flexent_traits_probe"]  # type: ignore[no-any-return]

    @property
    def step_free(self) -> bool:
        """True when the weights do not depend on the step (no trainer support needed)."""
        return strategy_class(self.strategy).step_free


def section_of(actor_config: Any) -> FlexentPolicyLossConfig:
    """The actor's ``policy_loss`` when it is flexent's section, else one with the defaults
    (verl's plain ``PolicyLossConfig`` running a ``flexent_*`` loss): the one place the
    adapter's settings come from, so no fallback restates a default."""
    pl = actor_config.policy_loss
    return pl if isinstance(pl, FlexentPolicyLossConfig) else _default_section()


@functools.cache
def _default_section() -> FlexentPolicyLossConfig:
    return FlexentPolicyLossConfig()


def _plain(value: Any) -> Any:
    """OmegaConf ListConfig / tuples -> plain lists (floats pass through)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [float(v) if isinstance(v, (int, float)) else v for v in value]
    return value

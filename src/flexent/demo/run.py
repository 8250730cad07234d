"""``flexent demo`` (steps 2-4 of :mod:`flexent.demo`): the arms, the one-seed sweep that trains
them from the warm-up model, and the reports.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flexent.demo.setup import CONFIG, DemoSetup
from flexent.demo.summary import write_summary
from flexent.errors import UserError
from flexent.strategies import list_strategies
from flexent.sweep.compare import write_sweep_report
from flexent.sweep.runner import execute, log_path
from flexent.sweep.spec import SweepSpec, validate_runs

# GRPO, the paper's `id`, and an arm that does steer entropy in this setting (docs/replication.md:
# the clip alone does not; the `target` controller's entropy-bonus actuator holds H near H_init)
ARMS = ("static", "id", "target-bonus")
# Named arms beyond the plain strategies (docs/replication.md measured them): the same overrides
# as the sweep specs' groups. Any registered strategy name is an arm too.
PRESETS: dict[str, dict[str, Any]] = {
    "target-bonus": {"entropy_control.strategy": "target",
                     "entropy_control.strategy_params": {"target": 1.0, "actuator": "bonus",
                                                         "bonus_max": 0.05}},
    "clip-higher": {"entropy_control.strategy": "static",
                    "entropy_control.thresholds.eps_std": [0.2, 0.28]},
    "id-steep": {"entropy_control.strategy": "id",
                 "entropy_control.thresholds.upper": [-0.43, 0.5]},
    "up-tight": {"entropy_control.strategy": "static",
                 "entropy_control.thresholds.eps_std": [0.2, 0.05]},
}  # fmt: skip


def arm_overrides(arm: str) -> dict[str, Any]:
    """The config overrides of a demo arm: a preset (:data:`PRESETS`) or a strategy name."""
    if arm in PRESETS:
        return dict(PRESETS[arm])
    if arm in list_strategies():
        return {"entropy_control.strategy": arm}
    raise UserError(
        f"--arms: unknown arm {arm!r}; use a strategy ({', '.join(list_strategies())}) or a "
        f"preset ({', '.join(PRESETS)})"
    )


def parse_arms(text: str) -> tuple[str, ...]:
    """``--arms static,id,up-tight`` -> the arms, each checked (:func:`arm_overrides`)."""
    arms = tuple(a.strip() for a in text.split(","))
    if not all(arms):
        raise UserError(f"--arms: empty arm name in {text!r} (a comma-separated list: static,id)")
    if len(set(arms)) != len(arms):
        raise UserError(f"--arms must name distinct arms, got {text!r}")
    for arm in arms:
        arm_overrides(arm)
    return arms


def demo_spec(
    run_dir: Path, overrides: list[str], arms: tuple[str, ...] = ARMS, seed: int = 0
) -> SweepSpec:
    """The demo as a one-seed sweep: every arm on the same warm-up model and prompts,
    ``configs/demo.yaml`` plus ``overrides`` (``key=value`` strings, passed on as written);
    the first arm is the baseline. A key the demo sets itself, or that a chosen arm sets,
    is a :class:`UserError` naming it."""
    set_by_arm = {k: arm for arm in reversed(arms) for k in arm_overrides(arm)}
    extra: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"override {item!r} must look like key.sub=value")
        if key == "output.dir":
            raise UserError("output.dir is the demo's --run-dir (each arm gets a directory in it)")
        if key == "trainer.seed":
            raise UserError("trainer.seed: use --seed N (every arm gets the same seed)")
        if key == "entropy_control.strategy":
            raise UserError("entropy_control.strategy is set per arm: use --arms STRATEGY,...")
        if key in set_by_arm:
            raise UserError(
                f"override {key} clashes with arm {set_by_arm[key]!r}, which sets it to "
                f"{arm_overrides(set_by_arm[key])[key]!r}; drop one of them"
            )
        extra[key] = value  # a string: `flexent train` parses it as the check did
    groups = {arm: arm_overrides(arm) for arm in arms}
    return SweepSpec(path=CONFIG, name="demo", base="demo", out=run_dir, overrides=extra,
                     groups=groups, seeds=[seed], baseline=arms[0])  # fmt: skip


def run_demo(
    run_dir: str | Path, overrides: list[str], *, arms: tuple[str, ...] = ARMS,
    threads: int | None = None, seed: int = 0,
) -> int:  # fmt: skip
    """Warm-up (cached), one GRPO run per arm, the comparison report and ``summary.md``."""
    # (lazy: TRL and torch; `flexent demo --help` imports this module)
    from flexent.integrations.trl.config import load_config

    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} already exists; remove it or pass --run-dir NEW_DIR")
    parse_arms(",".join(arms))
    t0 = time.time()
    setup = DemoSetup()
    cache = run_dir.parent / ".flexent-cache"
    # before the warm-up: a bad override is one line naming it
    spec = demo_spec(run_dir, overrides, arms, seed)
    fixed = [f"{k}={v}" for k, v in setup.overrides(cache).items()]
    load_config(CONFIG, fixed + list(overrides))
    runs = spec.runs(setup.overrides(cache))
    validate_runs(spec, runs)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # the warm-up's SFT runs in this process
    setup.prepare(cache)
    failed = []
    for outcome in execute(spec.base_config(), runs, run_dir, threads=threads,
                           on_done=lambda o: print(f"[demo] {o.run.arm}: {o.status} in "
                                                   f"{o.wall_s:.0f} s", flush=True)):  # fmt: skip
        if outcome.status == "failed":
            failed.append(f"{outcome.run.arm} ({outcome.message}; log: "
                          f"{log_path(run_dir, outcome.run)})")  # fmt: skip
    if failed:
        raise UserError(f"demo run(s) failed: {'; '.join(failed)}")
    write_sweep_report(spec)
    path = write_summary(spec, elapsed_s=time.time() - t0, command="flexent demo")
    print(f"[demo] done in {time.time() - t0:.0f} s; see {path}")
    return 0

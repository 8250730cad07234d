"""The controllers benchmark's tables (docs/controllers.md) from a finished sweep of
configs/sweeps/controllers.yaml.

Per run, with H_k the rollout entropy the controllers observe at optimizer step k (TRL's
``entropy/rollout``, logged at step k + 1) and H_init = H_0:

- ``error`` against a reference H*: mean over k = 0 .. T-1 of |H_k - H*(k / T)| / H_init, the
  quantity the ``target`` controller reports as ``control/tracking_error``, computed here the
  same way for every arm (reference-free arms are scored against every reference); ``error,
  2nd half``: the same mean over k >= T / 2 (after the transient);
- ``mean@16`` / ``pass@16``: the final held-out values (``eval.json``), as differences from
  the baseline arm (GRPO) with Welch 95 % t-intervals over seeds;
- ``s/run``: the run's wall time (``sweep_run.json``), as a ratio to the baseline's (95 %
  interval on the log ratio); runs of one sweep ran one at a time on the same machine.

An arm belongs to the reference its name starts with (``hold-``, ``half-``, ``idshape-``);
other arms are reference-free. Errors are averaged over seeds with 95 % t-intervals.

    python scripts/controllers_table.py runs/sweeps/controllers
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from flexent.report import Run, load_run
from flexent.strategies import make_trajectory
from flexent.sweep.stats import Interval, diff_interval, mean_interval, ratio_interval

REFERENCES = {
    "hold": make_trajectory(target=1.0),
    "half": make_trajectory(target=0.5),
    "idshape": make_trajectory(preset="id"),
}
TARGET_ERROR = 0.10  # the target: mean tracking error <= 10 % of H_init


def rollout_entropies(run: Run) -> list[float]:
    """H_k for k = 0 .. T-1 (the value logged at step k + 1)."""
    steps, values = run.series("entropy/rollout")
    by_step = {int(s): v for s, v in zip(steps, values, strict=True) if not math.isnan(v)}
    return [by_step[s] for s in sorted(by_step)]


def tracking_error(entropies: list[float], reference: str, *, start: float = 0.0) -> float:
    """Mean |H_k - H*(k/T)| / H_init over the steps k >= ``start`` T (module docstring)."""
    if not entropies:
        return math.nan
    h_init, total = entropies[0], len(entropies)
    traj = REFERENCES[reference]
    errors = [abs(h - traj(k / total, h_init)) / h_init
              for k, h in enumerate(entropies) if k >= start * total]  # fmt: skip
    return sum(errors) / len(errors)


def run_values(run_dir: Path) -> dict[str, float]:
    run = load_run(run_dir)
    ent = rollout_entropies(run)
    out = {f"error/{ref}": tracking_error(ent, ref) for ref in REFERENCES}
    out |= {f"late/{ref}": tracking_error(ent, ref, start=0.5) for ref in REFERENCES}
    final = json.loads((run_dir / "eval.json").read_text())["final"]["metrics"]
    out["mean@16"], out["pass@16"] = final["mean@16"], final["pass@16"]
    out["wall_s"] = json.loads((run_dir / "sweep_run.json").read_text())["wall_s"]
    out["h_init"], out["h_final"] = ent[0], ent[-1]
    out.update(actuator_use(run, run_dir))
    return out


def actuator_use(run: Run, run_dir: Path) -> dict[str, float]:
    """How each controller used its actuator over the run's logged steps (NaN where the arm
    has no such actuator): ``saturated`` the share of steps with |u| >= 0.999 (``target``;
    for ``cascade``, whose output reaches 2, that is the clip stage full), ``pushing down``
    the share with u < 0, ``floor, 2nd half`` the share of the second half's steps with u at
    its lower limit (-1, or -2 for ``cascade``: every actuator at full entropy-lowering
    output), ``gate open`` (``aepo``), ``zeta at cap``
    (``repo_r``: |zeta| = zeta_max), ``max coef`` (Skywork's adaptive coefficient),
    ``dropped`` (``clip_b``'s mean share of dropped tokens)."""

    def series(key: str) -> list[float]:
        return [v for v in run.series(key)[1] if not math.isnan(v)]

    def share(key: str, pred) -> float:  # type: ignore[no-untyped-def]
        values = series(key)
        return sum(map(pred, values)) / len(values) if values else math.nan

    zeta_max = 0.05  # repo_r's default, the benchmark's setting
    floor = -2.0 if "actuator: cascade" in _config_text(run_dir) else -1.0
    steps, us = run.series("control/u")
    late = [u for s, u in zip(steps, us, strict=True) if s > len(steps) / 2 and not math.isnan(u)]
    coef = series("control/adaptive_entropy_coef")
    drop = series("clip_b/frac_dropped")
    return {
        "saturated": share("control/u", lambda u: abs(u) >= 0.999),
        "pushing down": share("control/u", lambda u: u < 0),
        "floor, 2nd half": (
            sum(u <= floor * 0.999 for u in late) / len(late) if late else math.nan
        ),
        "gate open": share("control/gate", lambda g: g > 0),
        "zeta at cap": share("control/zeta", lambda z: abs(z) >= zeta_max * 0.999),
        "max coef": max(coef) if coef else math.nan,
        "dropped": sum(drop) / len(drop) if drop else math.nan,
    }


def _config_text(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    return path.read_text() if path.exists() else ""


USE_KEYS = (
    "saturated", "pushing down", "floor, 2nd half", "gate open", "zeta at cap", "max coef",
    "dropped",
)  # fmt: skip


def use_table(arms: dict[str, dict[int, dict[str, float]]]) -> str:
    """Per controller arm, the seed mean of each actuator measure it has."""
    lines = ["| arm | " + " | ".join(USE_KEYS) + " |", "|---" * (len(USE_KEYS) + 1) + "|"]
    for arm, runs in arms.items():
        cells = []
        for key in USE_KEYS:
            iv = mean_interval(_vals(runs, key))
            cells.append("" if not iv.n else f"{iv.value:.3f}")
        if any(cells):
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collect(sweep: Path) -> dict[str, dict[int, dict[str, float]]]:
    """arm -> seed -> values, for every finished run of the sweep directory."""
    arms: dict[str, dict[int, dict[str, float]]] = {}
    for status in sorted(sweep.glob("*/seed*/sweep_run.json")):
        if json.loads(status.read_text()).get("status") != "done":
            continue
        run_dir = status.parent
        seed = int(run_dir.name.removeprefix("seed"))
        arms.setdefault(run_dir.parent.name, {})[seed] = run_values(run_dir)
    return arms


def _vals(arm: dict[int, dict[str, float]], key: str) -> list[float]:
    return [arm[s][key] for s in sorted(arm)]


def _pct(iv: Interval) -> str:
    return iv.fmt(1, scale=100.0)


def table(arms: dict[str, dict[int, dict[str, float]]], reference: str, baseline: str) -> str:
    base = arms[baseline]
    free = [a for a in arms if not any(a.startswith(f"{r}-") for r in REFERENCES)]
    mine = [a for a in arms if a.startswith(f"{reference}-")]
    lines = [
        f"| arm | seeds | error vs {reference} (%) | <= {TARGET_ERROR:.0%} | error, 2nd half (%) | "
        "H_final / H_init | "
        f"final mean@16 - {baseline} (points) | final pass@16 - {baseline} (points) | "
        f"wall / {baseline} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in mine + free:
        runs = arms[arm]
        err = mean_interval(_vals(runs, f"error/{reference}"))
        ratio_h = mean_interval([r["h_final"] / r["h_init"] for r in runs.values()])
        ok = "yes" if err.n and err.value <= TARGET_ERROR else "no"
        lines.append(
            f"| {arm.removeprefix(reference + '-')} | {len(runs)} | {_pct(err)} | {ok} | "
            f"{_pct(mean_interval(_vals(runs, f'late/{reference}')))} | {ratio_h.fmt(2)} | "
            f"{_pct(diff_interval(_vals(runs, 'mean@16'), _vals(base, 'mean@16')))} | "
            f"{_pct(diff_interval(_vals(runs, 'pass@16'), _vals(base, 'pass@16')))} | "
            f"{ratio_interval(_vals(runs, 'wall_s'), _vals(base, 'wall_s')).fmt(2)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep directory")
    parser.add_argument("--baseline", default="static", help="the reference arm (GRPO)")
    args = parser.parse_args(argv)
    arms = collect(args.sweep)
    if args.baseline not in arms:
        parser.error(f"{args.sweep}: no finished run of the baseline arm {args.baseline!r}")
    base = arms[args.baseline]
    print(f"{args.baseline}: final held-out mean@16 "
          f"{_pct(mean_interval(_vals(base, 'mean@16')))} %, pass@16 "
          f"{_pct(mean_interval(_vals(base, 'pass@16')))} %, "
          f"{mean_interval(_vals(base, 'wall_s')).fmt(0)} s per run\n")  # fmt: skip
    for reference in REFERENCES:
        print(f"### {reference}\n")
        print(table(arms, reference, args.baseline))
        print()
    print("### actuator use (shares of logged steps, seed means)\n")
    print(use_table(arms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``flexent demo``: the CPU main job, nothing downloaded (docs/training.md, "The demo").

1. Bootstrap (cached): a small Qwen2 with a character-level tokenizer, warmed up by TRL's
   ``SFTTrainer`` on countdown demonstrations (the generator's own solutions) to a weak start.
2. GRPO on countdown (``configs/demo.yaml``), one run per arm (default ``static``, ``id``,
   ``target-bonus``) from the same warm-up, prompts and seed, each generation batch feeding 16
   optimizer steps (4 mini-batches x 4 epochs) so that the clip acts (docs/replication.md): a
   one-seed :mod:`flexent.sweep`.
3. Held-out pass@k of each arm before, during and after training (``eval.json``).
4. The sweep report (``report/``) and ``summary.md`` in the run directory.

Prompts are short on purpose (character-level tokens): ``"12 5>17="`` -> ``"12+5"``. With 2
numbers in 1..30 and targets <= 60 there are about 1,080 distinct problems (measured), so the
data sizes stay well below that (``CountdownTask.generate`` waits for n distinct ones).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from flexent.errors import UserError

ALPHABET = "0123456789+-*/()>= "
CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


@dataclass(frozen=True)
class Bootstrap:
    """What the cached warm-up model depends on (its hash names the cache directory)."""

    n_numbers: int = 2
    max_number: int = 30
    max_target: int = 60
    seed: int = 0
    sft_examples: int = 900
    sft_epochs: float = 8.0
    sft_lr: float = 2e-3
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    # fp32: TRL's configs default to bf16 autocast, which this kind of CPU (AVX2, no bf16 units)
    # runs about 10x slower than fp32 (docs/performance.md); part of the cache key.
    bf16: bool = False
    # The warm-up trains on raw prompts, never on chat turns: its tokenizer is saved without the
    # char tokenizer's ChatML template, so `flexent eval --chat auto` does not wrap prompts in
    # a format the model has never seen (it scored 0 % that way); part of the cache key.
    chat_template: bool = False

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def prompt_of(numbers: tuple[int, ...], target: int) -> str:
    return " ".join(map(str, numbers)) + f">{target}="


def write_task_files(root: Path, b: Bootstrap, *, n_train: int, n_test: int) -> tuple[Path, Path]:
    """Countdown prompts as JSONL (``prompt``, ``answer``, ``numbers``, ``target``)."""
    from flexent.tasks.countdown import CountdownTask

    task = CountdownTask(b.n_numbers, b.max_number, b.seed + 1, max_target=b.max_target)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [
            {"prompt": prompt_of(p.numbers, p.target), "answer": p.solution.replace(" ", ""),
             "numbers": list(p.numbers), "target": p.target}
            for p in task.generate(n, split=split)
        ]  # fmt: skip
        path = root / f"countdown_{split}.jsonl"
        tmp = path.with_suffix(".jsonl.partial")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]


@dataclass(frozen=True)
class DemoSetup:
    """What ``flexent demo`` (and a sweep with ``base: demo``) prepares before GRPO: the cached
    warm-up model (:class:`Bootstrap`) and the train / held-out prompt files."""

    bootstrap: Bootstrap = Bootstrap()
    n_train: int = 900
    n_test: int = 100

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemoSetup:
        """From a flat mapping of :class:`Bootstrap` fields plus ``n_train`` / ``n_test``;
        unknown keys raise ValueError listing the valid ones."""
        boot = {f.name for f in fields(Bootstrap)}
        unknown = sorted(set(d) - boot - {"n_train", "n_test"})
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown}; valid: {sorted(boot | {'n_train', 'n_test'})}"
            )
        sizes = {k: v for k, v in d.items() if k in ("n_train", "n_test")}
        return cls(Bootstrap(**{k: v for k, v in d.items() if k in boot}), **sizes)

    def data_dir(self, cache: Path) -> Path:
        return cache / f"countdown-data-{self.bootstrap.key()}-{self.n_train}-{self.n_test}"

    def overrides(self, cache: Path) -> dict[str, str]:
        """The config keys the setup fills (paths as they will be after :meth:`prepare`)."""
        data = self.data_dir(cache)
        return {
            "model.path": str(model_dir(cache, self.bootstrap)),
            "data.source": str(data / "countdown_train.jsonl"),
            "evaluation.source": str(data / "countdown_test.jsonl"),
        }

    def prepared(self, cache: Path) -> bool:
        return all(Path(p).exists() for p in self.overrides(cache).values())

    def prepare(self, cache: Path) -> dict[str, str]:
        """Build (or reuse) the warm-up model and the prompt files; returns :meth:`overrides`."""
        cache.mkdir(parents=True, exist_ok=True)
        bootstrap_model(cache, self.bootstrap)
        write_task_files(self.data_dir(cache), self.bootstrap, n_train=self.n_train,
                         n_test=self.n_test)  # fmt: skip
        return self.overrides(cache)


def model_dir(cache: Path, b: Bootstrap) -> Path:
    """Where the warm-up model of ``b`` is cached."""
    return cache / f"countdown-char-qwen2-{b.key()}"


def bootstrap_model(cache: Path, b: Bootstrap) -> Path:
    """SFT warm-up of a fresh tiny Qwen2 on countdown demonstrations; cached in ``cache``."""
    out = model_dir(cache, b)
    if (out / "config.json").is_file():
        print(f"[demo] bootstrap model cached: {out}")
        return out
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from flexent.models.tiny import build_char_tokenizer, build_tiny_qwen2
    from flexent.tasks.countdown import CountdownTask

    tokenizer = build_char_tokenizer(ALPHABET)
    if not b.chat_template:
        tokenizer.chat_template = None
    model = build_tiny_qwen2(
        tokenizer, hidden_size=b.hidden_size, num_layers=b.num_layers, num_heads=b.num_heads,
        max_position_embeddings=64, seed=b.seed,
    )  # fmt: skip
    # demonstrations come from a different seed than the GRPO prompts; train split only
    task = CountdownTask(b.n_numbers, b.max_number, b.seed + 100, max_target=b.max_target)
    demos = [
        {"prompt": prompt_of(p.numbers, p.target), "completion": p.solution.replace(" ", "")}
        for p in task.generate(b.sft_examples, split="train")
    ]
    args = SFTConfig(
        output_dir=str(out) + ".tmp", use_cpu=True, num_train_epochs=b.sft_epochs,
        per_device_train_batch_size=64, learning_rate=b.sft_lr, lr_scheduler_type="cosine",
        warmup_steps=10, logging_steps=20, save_strategy="no", report_to=[], max_length=64,
        seed=b.seed, disable_tqdm=True, bf16=b.bf16,
    )  # fmt: skip
    t0 = time.time()
    print(f"[demo] bootstrap: SFT on {len(demos)} countdown demonstrations ...")
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(demos), processing_class=tokenizer
    )
    trainer.train()
    # Save beside the cache entry, then rename: an interrupted save never looks like a cached
    # model (the cache test is config.json), and the trainer's scratch folder is removed.
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))
    tokenizer.save_pretrained(str(partial))
    os.replace(partial, out)
    shutil.rmtree(str(out) + ".tmp", ignore_errors=True)
    print(f"[demo] bootstrap done in {time.time() - t0:.0f} s -> {out}")
    return out


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
    from flexent.strategies import list_strategies

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
) -> Any:
    """The demo as a one-seed sweep: every arm on the same warm-up model and prompts,
    ``configs/demo.yaml`` plus ``overrides`` (``key=value`` strings, passed on as written);
    the first arm is the baseline. A key the demo sets itself, or that a chosen arm sets,
    is a :class:`UserError` naming it."""
    from flexent.sweep.spec import SweepSpec

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
    from flexent.integrations.trl.config import load_config
    from flexent.sweep import validate_runs
    from flexent.sweep.report import write_sweep_report
    from flexent.sweep.runner import execute, log_path

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
    from flexent.demo_report import write_summary

    path = write_summary(spec, elapsed_s=time.time() - t0, command="flexent demo")
    print(f"[demo] done in {time.time() - t0:.0f} s; see {path}")
    return 0

"""The demo's setup (step 1 of :mod:`flexent.demo`): the cached warm-up model and the prompt
files, registered with the sweep as ``base: demo``.

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from flexent.models.tiny import build_char_tokenizer, build_tiny_qwen2
from flexent.sweep.bases import NamedBase, register_base
from flexent.tasks.countdown import CountdownTask

ALPHABET = "0123456789+-*/()>= "
CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


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
    warm-up model (:class:`Bootstrap`) and the train / held-out prompt files (a
    :class:`flexent.sweep.Setup`)."""

    bootstrap: Bootstrap = Bootstrap()
    n_train: int = 900
    n_test: int = 100

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DemoSetup:
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


register_base("demo", NamedBase(config=CONFIG, setup=DemoSetup.from_dict))

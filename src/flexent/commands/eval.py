"""``flexent eval MODEL --benchmark NAME_OR_FILE [...] --samples K``: mean@K, pass@k, maj@K.

Writes ``results.json`` (per-problem correct counts, so pass@k can be recomputed for any
k <= K) and ``results.md`` (the table) to ``--out``. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flexent.errors import UserError, one_line_warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="model directory, .gguf file, hub name or packaged model (pypi:smollm2-135m-instruct)",
    )
    add = parser.add_argument
    add(
        "--benchmark",
        "-b",
        nargs="+",
        action="extend",
        required=True,
        metavar="NAME_OR_FILE",
        help="benchmark name (gsm8k, math500, aime24, aime25, amc23, olympiadbench, countdown, "
        "arithmetic) or a .jsonl/.json/.parquet file; repeatable",
    )
    add("--samples", "-k", type=int, default=1, metavar="K", help="samples per problem (default 1)")
    add(
        "--ks",
        type=int,
        nargs="+",
        metavar="k",
        help="k values for pass@k (default 1, 2, 4, ..., K)",
    )
    add("--max-samples", type=int, metavar="N", help="use the first N problems of each benchmark")
    add(
        "--split",
        help="split of named benchmarks and tasks (default: test for countdown / "
        "arithmetic, the benchmark's own default otherwise); ignored for files",
    )
    add(
        "--data-dir",
        metavar="DIR",
        help="folder holding the benchmark files (e.g. aime24_test.jsonl)",
    )
    add(
        "--reward",
        metavar="NAME",
        help="reward for every benchmark (default: math for math "
        "benchmarks and files, countdown / arithmetic for those tasks)",
    )
    add(
        "--reward-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of the reward (YAML value, repeatable), e.g. "
        "last_line_fallback=true for countdown answers without <answer> tags",
    )
    add(
        "--task-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="parameter of the countdown / arithmetic task (YAML value, repeatable), as in a "
        "training config's data.params, e.g. digits=2 'ops=[+]'; seed=N picks the task seed",
    )
    add(
        "--instruction",
        help="text appended to each problem; '{problem}' in it makes it a "
        "template (default for math-scored benchmarks: the \\boxed{} instruction; '' for none)",
    )
    add("--system-prompt", help="system message (chat prompts only)")
    add(
        "--chat",
        choices=("auto", "yes", "no"),
        default="auto",
        help="wrap prompts in the chat template (auto: when the tokenizer has one)",
    )
    add(
        "--backend",
        choices=("auto", "transformers", "vllm"),
        default="auto",
        help="auto: vllm when installed and a GPU is present, else transformers",
    )
    add("--gguf-file", help="GGUF file inside MODEL (a directory or hub repo)")
    add("--dtype", default="auto", choices=("float32", "bfloat16", "float16", "auto"))
    add("--device", help="transformers backend device (default cuda when available, else cpu)")
    add("--trust-remote-code", action="store_true")
    add("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    add("--top-p", type=float, default=0.8, help="default 0.8")
    add("--top-k", type=int, default=20, help="0 disables (default 20)")
    add("--max-new-tokens", type=int, default=1024, help="default 1024")
    add("--seed", type=int, default=0)
    add("--batch-size", type=int, default=16, help="sequences per generate call (transformers)")
    add("--out", default="eval_results", metavar="DIR", help="output folder (default eval_results)")
    add(
        "--overwrite",
        action="store_true",
        help="replace results.json / results.md already in --out (refused otherwise)",
    )
    add("--save-completions", action="store_true", help="also store every completion text")
    add("--no-progress", action="store_true", help="no progress bar")


def reward_params(items: list[str], flag: str = "--reward-param") -> dict[str, Any]:
    """``["key=value", ...]`` -> kwargs, each value parsed as YAML (``true``, ``3``, ``[1, 2]``).

    >>> reward_params(["last_line_fallback=true", "max_chars=50"])
    {'last_line_fallback': True, 'max_chars': 50}
    >>> reward_params(["digits=2", "ops=[+]"], "--task-param")
    {'digits': 2, 'ops': ['+']}
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise SystemExit(f"{flag} {item!r}: the value is not valid YAML") from None
    return out


def fail(message: str) -> int:
    print(f"flexent eval: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Check everything that needs no model (output folder, flags, benchmarks, rewards and
    their columns), load the model, then generate benchmark by benchmark, appending every
    scored problem to ``samples.jsonl`` as it goes."""
    with one_line_warnings("flexent eval"):
        try:
            checked = _check(args)
        except (UserError, SystemExit) as err:
            return fail(str(err).removeprefix("flexent eval: "))
        try:
            return _evaluate(args, *checked)
        except UserError as err:
            return fail(str(err))


def _check(args: argparse.Namespace) -> tuple[Any, list[int] | None, dict[str, Any], list[Any]]:
    from flexent.evaluation.generation import SamplingConfig
    from flexent.evaluation.runner import load_benchmarks

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if (out / "results.json").exists() and not args.overwrite:
        raise UserError(f"{out / 'results.json'} exists; choose another --out or pass --overwrite")
    ks = _check_ks(args.ks, args.samples)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_samples is not None and args.max_samples < 1:
        raise UserError(f"--max-samples must be >= 1, got {args.max_samples}")
    try:
        sampling = SamplingConfig(
            args.temperature, args.top_p, args.top_k, args.max_new_tokens, args.seed
        )
    except ValueError as err:
        raise UserError(f"sampling: {err}") from None
    params = reward_params(args.reward_param)
    task_params = reward_params(args.task_param, "--task-param")
    # the files, rows and reward columns, before the model loads (chat formatting later)
    benches = load_benchmarks(
        args.benchmark, chat=False, reward=args.reward, split=args.split,
        max_samples=args.max_samples, instruction=args.instruction,
        system_prompt=args.system_prompt, data_dir=args.data_dir, task_params=task_params,
    )  # fmt: skip
    for bench in benches:
        if not bench.rows:
            raise UserError(f"benchmark {bench.name} ({bench.source}): no problems")
        if bench.inferred:
            print(
                f"flexent eval: {bench.name}: scored with the {bench.reward} reward "
                f"({bench.inferred}; --reward to choose another)",
                file=sys.stderr,
            )
    rewards = [_reward(bench, params) for bench in benches]
    return sampling, ks, params, rewards


def _reward(bench: Any, params: dict[str, Any]) -> Any:
    from flexent.rewards import get_reward

    try:
        reward = get_reward(bench.reward, **params)
    except (TypeError, ValueError) as err:  # an unknown keyword, an unknown reward
        raise UserError(f"--reward-param for {bench.reward!r}: {err}") from None
    problem_of = getattr(reward, "row_problem", None)
    where = getattr(bench.rows, "where", None)
    for i, row in enumerate(bench.rows):
        problem = problem_of(row) if problem_of is not None else None
        if problem:
            at = where[i] if where else f"problem {i + 1}"
            raise UserError(f"benchmark {bench.name} ({bench.source}): {at}: {problem}")
    warm_up = getattr(reward, "warm_up", None)
    if callable(warm_up):
        warm_up()  # start the reward's checker now, while the model loads
    return reward


def _evaluate(
    args: argparse.Namespace,
    sampling: Any,
    ks: list[int] | None,
    params: dict[str, Any],
    rewards: list[Any],
) -> int:
    from tqdm.auto import tqdm

    from flexent.data import TASKS
    from flexent.evaluation.metrics import default_ks
    from flexent.evaluation.results import build_results, results_table, write_results
    from flexent.evaluation.runner import build_generator, load_benchmarks, run_benchmark

    try:
        generator = build_generator(
            args.model, sampling, backend=args.backend, gguf_file=args.gguf_file,
            dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code,
            batch_size=args.batch_size,
        )  # fmt: skip
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"model {args.model}: cannot load it: {first}") from None
    chat = _choose_chat(args.chat, generator.tokenizer)
    task_params = reward_params(args.task_param, "--task-param")
    benches = load_benchmarks(
        args.benchmark, chat=chat, reward=args.reward, split=args.split,
        max_samples=args.max_samples, instruction=args.instruction,
        system_prompt=args.system_prompt, data_dir=args.data_dir,
        task_params=task_params,
    )  # fmt: skip
    _warn_long_prompts(generator, benches, args.max_new_tokens)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    samples_path.write_text("")
    total = sum(len(b.rows) for b in benches)
    collected: dict[str, dict[str, Any]] = {}
    with tqdm(total=total, unit="problem", disable=args.no_progress, file=sys.stderr) as bar, \
            samples_path.open("a", encoding="utf-8") as samples:  # fmt: skip
        for bench, reward in zip(benches, rewards, strict=True):
            bar.set_description(bench.name)

            def keep(result: Any, row: dict[str, Any], name: str = bench.name) -> None:
                record = {"benchmark": name, "index": result.index, "answer": result.answer,
                          "correct": result.correct, "n": result.n, "scores": result.scores,
                          "extracted": result.extracted, "completions": result.completions}  # fmt: skip
                samples.write(json.dumps(record) + "\n")
                samples.flush()

            problems = run_benchmark(
                generator, bench, reward, samples=args.samples, keep_completions=True,
                progress=bar, on_problem=keep,
            )  # fmt: skip
            if not args.save_completions:
                for problem in problems:
                    problem.completions = None
            collected[bench.name] = {
                "source": bench.source,
                "reward": bench.reward,
                "reward_params": params,
                **({"task_params": task_params} if task_params and bench.source in TASKS else {}),
                "problems": problems,
            }
    results = build_results(
        collected,
        model=str(args.model),
        backend=generator.name,
        samples=args.samples,
        ks=ks or default_ks(args.samples),
        sampling={**sampling.to_dict(), "chat": chat},
    )
    json_path, md_path = write_results(results, args.out)
    print(results_table(results), end="")
    print(f"wrote {json_path}, {md_path} and {samples_path}")
    return 0


def _warn_long_prompts(generator: Any, benches: list[Any], max_new_tokens: int) -> None:
    """One warning when prompts plus ``--max-new-tokens`` exceed the model's context (the
    transformers backend; vLLM checks its own), as ``flexent train`` warns."""
    from flexent.evaluation.generation import context_overflow

    model = getattr(generator, "model", None)
    prompts = [row["prompt"] for bench in benches for row in bench.rows]
    found = context_overflow(generator.tokenizer, model, prompts, max_new_tokens)
    if found is not None:
        print(
            f"flexent eval: warning: {found.describe('--max-new-tokens')}; such generations "
            "are far slower and run at positions the model was not trained on: lower "
            "--max-new-tokens or evaluate shorter prompts",
            file=sys.stderr,
        )


def _choose_chat(choice: str, tokenizer: Any) -> bool:
    """``yes``/``no`` as given; ``auto``: the chat template when the tokenizer has one, said on
    stderr so a wrong guess is visible."""
    if choice != "auto":
        return choice == "yes"
    has = bool(getattr(tokenizer, "chat_template", None))
    what = "using the tokenizer's chat template" if has else "the tokenizer has no chat template"
    print(f"flexent eval: --chat auto: {what} (--chat yes/no to choose)", file=sys.stderr)
    return has


def _check_ks(ks: list[int] | None, samples: int) -> list[int] | None:
    if samples < 1:
        raise SystemExit(f"--samples must be >= 1, got {samples}")
    for k in ks or ():
        if not 1 <= k <= samples:
            raise SystemExit(f"--ks value {k} must be in [1, --samples={samples}]")
    return sorted(set(ks)) if ks else None

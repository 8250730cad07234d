"""How far the logged ``pred_dH`` (the token term) can be trusted, on a real model and vocabulary.

For each sampled token the exact first-order entropy change of a policy-gradient step on that
position's logits is ``-A [p_a (ln p_a + H) - sum_x p_x^2 (ln p_x + H)]`` (the full term,
``flexent.diagnostics.predicted_entropy_change`` with ``second_term``); the logged
``region/E*/pred_dH`` keeps only ``-A p_a (ln p_a + H)``. This script samples rollouts from a
model, scores them, forms GRPO advantages, and compares the two terms token by token, per
theory region: how often their signs agree and how their sums compare.

    python scripts/check_pred_dh.py demo     # the demo's warm-up model and held-out prompts
    python scripts/check_pred_dh.py demo --weights RUN/final   # a trained model, same prompts
    python scripts/check_pred_dh.py MODEL --data FILE.jsonl --reward countdown \\
        --reward-param last_line_fallback=true --problems 100 --samples 8 --max-new-tokens 8

Prints a markdown table (docs/metrics.md quotes it with this command).
"""

from __future__ import annotations

import argparse
import sys

import torch

from flexent.diagnostics import (
    REGIONS,
    entropy_second_term,
    predicted_entropy_change,
    region_masks,
    token_entropy,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a model directory, or `demo`: the demo's (cached) warm-up")
    p.add_argument("--data", help="prompt file (load_prompts; `demo`: its held-out prompts)")
    p.add_argument("--reward", default="countdown")
    p.add_argument("--cache", default="runs/.flexent-cache", help="`demo`: the warm-up cache")
    p.add_argument(
        "--weights",
        metavar="DIR",
        help="`demo`: score this model (e.g. a demo run's final/) on the demo's prompts instead "
        "of the warm-up",
    )
    p.add_argument("--reward-param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--problems", type=int, default=100)
    p.add_argument("--samples", type=int, default=8, help="completions per prompt (the group)")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def rollouts(model, tokenizer, prompts, args):  # type: ignore[no-untyped-def]
    """Sampled completions: ``(ids [N, P+C], prompt length P, texts)``, prompts left-padded."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        ids = model.generate(
            **enc, do_sample=True, temperature=args.temperature, top_k=0, top_p=1.0,
            max_new_tokens=args.max_new_tokens, num_return_sequences=args.samples,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    plen = enc["input_ids"].shape[1]
    texts = tokenizer.batch_decode(ids[:, plen:], skip_special_tokens=True)
    return ids, plen, enc["attention_mask"].repeat_interleave(args.samples, 0), texts


def main(argv: list[str]) -> int:
    from flexent.commands.eval import reward_params
    from flexent.data import load_prompts
    from flexent.models import load_model_and_tokenizer
    from flexent.rewards import get_reward

    args = parse_args(argv)
    if args.model == "demo":
        from pathlib import Path

        from flexent.demo import DemoSetup

        setup = DemoSetup().prepare(Path(args.cache))
        args.model, args.data = setup["model.path"], args.data or setup["evaluation.source"]
        args.model = args.weights or args.model
        args.reward_param = args.reward_param or ["last_line_fallback=true"]
    if args.data is None:
        raise SystemExit("--data is required (except for `demo`)")
    model, tokenizer = load_model_and_tokenizer(args.model, dtype="float32")
    rows = load_prompts(args.data, max_samples=args.problems)
    reward = get_reward(args.reward, **reward_params(args.reward_param))
    ids, plen, prompt_mask, texts = rollouts(model, tokenizer, [r["prompt"] for r in rows], args)
    scores = torch.tensor(
        [reward.score(t, rows[i // args.samples]).score or 0.0 for i, t in enumerate(texts)]
    ).view(-1, args.samples)
    adv = ((scores - scores.mean(1, keepdim=True)) / (scores.std(1, keepdim=True) + 1e-4)).view(-1)
    completion = ids[:, plen:]
    # valid completion tokens: up to and including the first EOS
    is_eos = completion == tokenizer.eos_token_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0
    mask = ~after & (completion != tokenizer.pad_token_id)
    attention = torch.cat([prompt_mask, torch.ones_like(completion)], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits[:, plen - 1 : -1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, completion[..., None])[..., 0]
    entropy = token_entropy(logits)
    token = predicted_entropy_change(logp, adv, entropy=entropy)
    full = predicted_entropy_change(logp, adv, entropy=entropy,
                                    second_term=entropy_second_term(logits))  # fmt: skip
    regions = region_masks(logp, adv, mask, entropy=entropy, scheme="theory")
    n_valid = int(mask.sum())
    print(f"model {args.model}: {scores.numel()} rollouts, {n_valid} tokens, vocabulary "
          f"{logits.shape[-1]}, mean reward {scores.mean():.3f}, mean entropy "
          f"{float(entropy[mask].mean()):.3f}\n")  # fmt: skip
    print("| region | share | sign agreement (token vs full) | sum token term | sum full term |")
    print("|---|---|---|---|---|")
    for name in REGIONS:
        r = regions[name]
        n = int(r.sum())
        if n == 0:
            print(f"| {name} | 0 | | | |")
            continue
        agree = float((torch.sign(token[r]) == torch.sign(full[r])).float().mean())
        print(f"| {name} | {n / n_valid:.3f} | {agree:.3f} | {float(token[r].sum()) / n_valid:+.4f} "
              f"| {float(full[r].sum()) / n_valid:+.4f} |")  # fmt: skip
    all_valid = mask & (adv[:, None] != 0)
    agree = float((torch.sign(token[all_valid]) == torch.sign(full[all_valid])).float().mean())
    print(
        f"| all (A != 0) | {float(all_valid.sum()) / n_valid:.3f} | {agree:.3f} | "
        f"{float(token[mask].sum()) / n_valid:+.4f} | {float(full[mask].sum()) / n_valid:+.4f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

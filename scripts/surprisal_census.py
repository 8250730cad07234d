"""How many sampled tokens are "surprising" (the pool E2 and E4 are drawn from), per sampling.

E2 (and E4) are the sampled tokens whose surprisal -ln p_old exceeds the entropy H of pi_old at
their position (docs/method.md §2), taken with A > 0 (A < 0). When no sampled completion is
right (every group's advantage is 0) the logged region shares are all 0 and say nothing about
that pool; this census measures it directly, without rewards: it samples completions of the
task's training prompts from a model under each sampling setting, scores them with the
model at the sampling temperature over the full vocabulary (as TRL computes pi_old: logits /
T, no top-p / top-k), and reports per setting the share of completion tokens that are
surprising (surprisal > H), the share with p_old < 0.1, the mean token entropy, and the
mean p_old mass outside the sampled token's top-k / top-p set (0 for untruncated sampling).

    python scripts/surprisal_census.py                        # SmolLM2-135M, 32 prompts x 4
    python scripts/surprisal_census.py --prompts 64 --samples 8 --threads 2

docs/smollm2.md quotes its table with the command that made it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SETTINGS = {  # name -> (temperature, top_p, top_k)
    "T 0.7, top-p 0.8, top-k 20 (the config's)": (0.7, 0.8, 20),
    "T 1.0, no truncation": (1.0, 1.0, 0),
}


def prompts(n: int) -> list:
    from flexent.data import load_prompts

    rows = load_prompts("arithmetic", split="train", max_samples=n, chat=True,
                        task_params={"digits": 2, "ops": ["+"]})  # fmt: skip
    return [r["prompt"] for r in rows]


@torch.no_grad()
def census(
    model, tok, texts: list[str], samples: int, setting: tuple[float, float, int], seed: int
):
    temperature, top_p, top_k = setting
    torch.manual_seed(seed)
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p,
                         top_k=top_k, max_new_tokens=64, num_return_sequences=samples,
                         pad_token_id=tok.pad_token_id)  # fmt: skip
    prompt_len = enc["input_ids"].shape[1]
    attn = (out != tok.pad_token_id).long()
    attn[:, :prompt_len] = enc["attention_mask"].repeat_interleave(samples, 0)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)  # left padding: as generate() counts them
    logits = model(input_ids=out, attention_mask=attn, position_ids=positions).logits
    logits = logits[:, prompt_len - 1 : -1].float()
    logp = torch.log_softmax(logits / temperature, -1)
    completion = out[:, prompt_len:]
    mask = _completion_mask(completion, tok)
    token_logp = logp.gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    kept = _kept_mass(p, top_p, top_k)
    n = mask.sum()
    return {
        "tokens": int(n),
        "surprising": float(((-token_logp > entropy) & mask).sum() / n),
        "p_old < 0.1": float(((token_logp.exp() < 0.1) & mask).sum() / n),
        "entropy": float((entropy * mask).sum() / n),
        "mass outside the sampling set": float(((1 - kept) * mask).sum() / n),
    }


def _completion_mask(completion: torch.Tensor, tok) -> torch.Tensor:
    """Tokens up to and including the first EOS (padding after it is not a sampled token)."""
    eos = completion == tok.eos_token_id
    after = torch.cumsum(eos.long(), -1) - eos.long()
    return (after == 0) & (completion != tok.pad_token_id) | eos & (after == 0)


def _kept_mass(p: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """The probability mass of the tokens top-k / top-p sampling can draw at each position
    (transformers' order: top-k first, then top-p on the renormalised remainder)."""
    if top_p >= 1.0 and top_k <= 0:
        return torch.ones(p.shape[:-1])
    sorted_p, _ = p.sort(-1, descending=True)
    if top_k > 0:
        sorted_p = sorted_p[..., :top_k]
    renorm = sorted_p / sorted_p.sum(-1, keepdim=True)
    before = renorm.cumsum(-1) - renorm  # mass strictly before each token
    keep = before < top_p if top_p < 1.0 else torch.ones_like(renorm, dtype=torch.bool)
    return (sorted_p * keep).sum(-1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pypi:smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4, help="completions per prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from flexent.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(args.model)
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
             for m in prompts(args.prompts)]  # fmt: skip
    rows = {
        name: census(model, tok, texts, args.samples, s, args.seed) for name, s in SETTINGS.items()
    }
    keys = list(next(iter(rows.values())))
    print("| sampling | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in rows.items():
        cells = [str(r["tokens"])] + [f"{r[k]:.3f}" if k == "entropy" else f"{100 * r[k]:.1f} %"
                                      for k in keys[1:]]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generation backends: K samples per prompt from transformers ``generate`` or vLLM.

Both backends take prompts as strings (used as is) or chat message lists (rendered with the
tokenizer's chat template, generation prompt appended) and return the decoded completions,
``n`` per prompt, in prompt order. transformers and vLLM are imported lazily.

The vLLM backend needs a GPU and the ``vllm`` package; it is not exercised by the test suite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

Prompt = str | Sequence[Mapping[str, str]]
ProgressFn = Callable[[int], None]


@dataclass
class SamplingConfig:
    """Sampling settings. Defaults are the paper's evaluation settings (temperature 0.7,
    top-p 0.8, top-k 20). ``temperature=0`` means greedy decoding; ``top_k=0`` disables top-k.
    """

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    max_new_tokens: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(Protocol):
    """What the evaluation loop needs from a backend."""

    name: str
    tokenizer: Any

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int,
        progress: ProgressFn | None = None,
        batch_offset: int = 0,
    ) -> list[list[str]]: ...


def render_prompt(tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
    """``(text, templated)``: a chat message list through the chat template, a string as is."""
    if isinstance(prompt, str):
        return prompt, False
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "prompt is a list of chat messages but the tokenizer has no chat template; "
            "evaluate without --chat or use an instruct model"
        )
    text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return str(text), True


@dataclass(frozen=True)
class Overflow:
    """Prompts that do not fit a model's context with the completion (:func:`context_overflow`)."""

    over: int  # prompts that do not fit
    total: int
    longest: int  # tokens of the longest prompt
    completion: int
    context: int

    def describe(self, completion_setting: str) -> str:
        """One sentence, naming the completion length by ``completion_setting``."""
        return (
            f"{self.over} of {self.total} prompts do not fit the model's context with the "
            f"completion: longest prompt {self.longest} tokens + {completion_setting} "
            f"{self.completion} > max_position_embeddings {self.context}"
        )


def context_overflow(
    tokenizer: Any, model: Any, prompts: Sequence[Prompt], completion: int
) -> Overflow | None:
    """How many ``prompts`` (rendered as generation renders them) plus ``completion`` new
    tokens exceed ``model.config.max_position_embeddings``; None when all fit or the model
    does not say its context. Such generations are far slower and run at positions the
    model was not trained on."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(context, int) or not prompts:
        return None
    lengths = []
    for prompt in prompts:
        text, templated = render_prompt(tokenizer, prompt)
        lengths.append(len(tokenizer(text, add_special_tokens=not templated)["input_ids"]))
    over = sum(n + completion > context for n in lengths)
    if not over:
        return None
    return Overflow(over, len(lengths), max(lengths), completion, context)


class TransformersGenerator:
    """Batched sampling with ``model.generate`` (CPU or GPU), left padding.

    ``batch_size`` counts sequences: each forward pass generates ``batch_size // n`` prompts
    (at least one) times ``n`` samples. Batch ``b`` is seeded with ``seed + b`` inside a forked
    RNG, so results depend on the seed and batch layout, and the global RNG is left untouched.
    """

    name = "transformers"

    def __init__(
        self, model: Any, tokenizer: Any, sampling: SamplingConfig, *, batch_size: int = 16
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.sampling, self.batch_size = sampling, batch_size

    def prompts_per_batch(self, n: int) -> int:
        """Prompts per ``generate`` forward pass for ``n`` samples each."""
        return max(1, self.batch_size // n)

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int,
        progress: ProgressFn | None = None,
        batch_offset: int = 0,
    ) -> list[list[str]]:
        """``n`` completions per prompt. ``batch_offset``: the index of the first batch in a
        longer run split into calls (the seeds continue as in one call)."""
        if n < 1:
            raise ValueError(f"n (samples per prompt) must be >= 1, got {n}")
        per_batch = self.prompts_per_batch(n)
        out: list[list[str]] = []
        for b, start in enumerate(range(0, len(prompts), per_batch), start=batch_offset):
            batch = prompts[start : start + per_batch]
            out.extend(self._generate_batch(batch, n=n, seed=self.sampling.seed + b))
            if progress is not None:
                progress(len(batch))
        return out

    def _generate_batch(self, batch: Sequence[Prompt], *, n: int, seed: int) -> list[list[str]]:
        import torch

        rendered = [render_prompt(self.tokenizer, p) for p in batch]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            # A chat template already holds any BOS; raw text gets the tokenizer's specials.
            enc = self.tokenizer(
                [text for text, _ in rendered],
                return_tensors="pt",
                padding=True,
                add_special_tokens=not any(templated for _, templated in rendered),
            ).to(self.model.device)
        finally:
            self.tokenizer.padding_side = side
        greedy = self.sampling.temperature == 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                top_k=self.sampling.top_k or None,
                num_return_sequences=n,
            )
        cuda = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(seed)
            ids = self.model.generate(**enc, **kwargs)
        texts = self.tokenizer.batch_decode(
            ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        if greedy:  # one decode per prompt; every sample is the same
            return [[t] * n for t in texts]
        return [texts[i * n : (i + 1) * n] for i in range(len(batch))]


class VLLMGenerator:
    """Sampling with vLLM (GPU only; needs ``pip install vllm``).

    Not covered by the CPU test suite. ``model`` is anything ``vllm.LLM(model=...)`` accepts (a
    model directory or hub name); ``llm_kwargs`` go to ``vllm.LLM`` as is (e.g.
    ``gpu_memory_utilization``, ``tensor_parallel_size``).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        sampling: SamplingConfig,
        *,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        **llm_kwargs: Any,
    ):
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "the vllm backend needs the vllm package (GPU only): pip install vllm; "
                "or use --backend transformers"
            ) from err
        self.sampling = sampling
        self.llm = LLM(
            model=model,
            dtype=dtype,
            seed=sampling.seed,
            trust_remote_code=trust_remote_code,
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int,
        progress: ProgressFn | None = None,
        batch_offset: int = 0,
    ) -> list[list[str]]:
        from vllm import SamplingParams

        s = self.sampling
        params = SamplingParams(
            n=n,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k if s.top_k > 0 else -1,
            max_tokens=s.max_new_tokens,
            seed=s.seed,
        )
        texts = [render_prompt(self.tokenizer, p)[0] for p in prompts]
        outputs = self.llm.generate(texts, params, use_tqdm=False)
        if progress is not None:
            progress(len(prompts))
        return [[o.text for o in out.outputs] for out in outputs]


def vllm_available() -> bool:
    """Whether the ``vllm`` package can be found (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None

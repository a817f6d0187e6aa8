"""The GGUF -> HF converter on a tiny llama GGUF written by gguf-py (fast; the real model is in
tests/functional/test_convert.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFWriter
from tokenizers import Tokenizer

from ringfence.errors import UnsupportedFormat
from ringfence.formats import safetensors as st_format
from ringfence.formats.convert import gguf_to_hf, hf_name, unpermute_rotary

HIDDEN, HEADS, KV_HEADS, FF = 16, 2, 1, 32
TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "Ġ", "ab", "Ġab", "1", "2"]
MERGES = ["a b", "Ġ ab"]


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), copied to test its inverse."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def test_unpermute_inverts_llama_cpp() -> None:
    weights = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    for n_head in (1, 2, 3):
        assert np.array_equal(unpermute_rotary(llama_cpp_permute(weights, n_head), n_head), weights)


def test_names_map_to_transformers() -> None:
    assert hf_name("blk.7.attn_q.weight") == "model.layers.7.self_attn.q_proj.weight"
    assert hf_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight"
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    with pytest.raises(UnsupportedFormat):
        hf_name("rope_freqs.weight")


def _tiny_gguf(
    path: Path, *, arch: str = "llama", extra: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """A one-layer llama GGUF in llama.cpp's layout (q/k permuted); returns the HF weights."""
    rng = np.random.default_rng(0)
    head_dim = HIDDEN // HEADS
    hf = {
        "model.embed_tokens.weight": rng.normal(size=(len(TOKENS), HIDDEN)),
        "model.norm.weight": rng.normal(size=HIDDEN),
        "model.layers.0.input_layernorm.weight": rng.normal(size=HIDDEN),
        "model.layers.0.post_attention_layernorm.weight": rng.normal(size=HIDDEN),
        "model.layers.0.self_attn.q_proj.weight": rng.normal(size=(HIDDEN, HIDDEN)),
        "model.layers.0.self_attn.k_proj.weight": rng.normal(size=(KV_HEADS * head_dim, HIDDEN)),
        "model.layers.0.self_attn.v_proj.weight": rng.normal(size=(KV_HEADS * head_dim, HIDDEN)),
        "model.layers.0.self_attn.o_proj.weight": rng.normal(size=(HIDDEN, HIDDEN)),
        "model.layers.0.mlp.gate_proj.weight": rng.normal(size=(FF, HIDDEN)),
        "model.layers.0.mlp.up_proj.weight": rng.normal(size=(FF, HIDDEN)),
        "model.layers.0.mlp.down_proj.weight": rng.normal(size=(HIDDEN, FF)),
    }
    hf = {k: v.astype(np.float32) for k, v in hf.items()}
    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(TOKENS)
    writer.add_token_types([3, 3, 3] + [1] * (len(TOKENS) - 3))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages[0]['content'] }}")
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    names = {v: k for k, v in {n: hf_name(n) for n in _GGUF_NAMES}.items()}
    for hf_key, values in hf.items():
        if hf_key.endswith("q_proj.weight"):
            values = llama_cpp_permute(values, HEADS)
        elif hf_key.endswith("k_proj.weight"):
            values = llama_cpp_permute(values, KV_HEADS)
        writer.add_tensor(names[hf_key], values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hf


_GGUF_NAMES = ["token_embd.weight", "output_norm.weight"] + [
    f"blk.0.{part}.weight"
    for part in (
        "attn_norm",
        "ffn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    )
]


def test_tiny_llama_converts(tmp_path: Path) -> None:
    hf = _tiny_gguf(tmp_path / "tiny.gguf")
    out = gguf_to_hf(tmp_path / "tiny.gguf", tmp_path / "hf")
    index = st_format.read_index(out / "model.safetensors")
    assert {t.name for t in index.tensors} == set(hf)
    assert all(t.dtype == "BF16" for t in index.tensors)
    raw = (out / "model.safetensors").read_bytes()
    for info in index.tensors:
        words = np.frombuffer(raw[info.begin : info.end], dtype=np.uint16).reshape(info.shape)
        assert np.array_equal(words, st_format.bf16_words(hf[info.name])), info.name
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        2,
        1,
        8,
    )
    assert (config["vocab_size"], config["bos_token_id"], config["eos_token_id"]) == (10, 1, 2)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.encode("ab ab12<|im_end|>").ids == [6, 7, 8, 9, 2]
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["eos_token"] == "<|im_end|>" and tok_config["add_bos_token"] is False
    assert tok_config["chat_template"] == "{{ messages[0]['content'] }}"


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    _tiny_gguf(tmp_path / "qwen.gguf", arch="qwen2")
    with pytest.raises(UnsupportedFormat, match="llama only"):
        gguf_to_hf(tmp_path / "qwen.gguf", tmp_path / "hf")


def test_cli_refuses_a_missing_file(cli: Any, tmp_path: Path) -> None:
    result = cli("convert", "gguf-to-hf", str(tmp_path / "nope.gguf"), str(tmp_path / "out"))
    assert result.code == 2 and "is not a file" in result.err

"""ringfence's GGUF -> Hugging Face converter for llama-architecture models.

It undoes what llama.cpp's `convert_hf_to_gguf.py` does: dequantises every tensor, renames
llama.cpp's tensors back to transformers' `LlamaForCausalLM` names, restores the q/k row order
that llama.cpp permutes for its rotary embedding, and writes the layout labs publish:
`model.safetensors` (bf16), `config.json`, `generation_config.json`, `tokenizer.json` and
`tokenizer_config.json`. Only numpy is needed (torch is an optional extra).

    gguf_to_hf(Path("SmolLM2-135M-Instruct.Q4_1.gguf"), Path("smollm2-hf"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

from ringfence.errors import MalformedFile, UnsupportedFormat
from ringfence.formats import gguf as gguf_format
from ringfence.formats.gguf_tokenizer import GgufVocabulary, build_tokenizer, tokenizer_config
from ringfence.formats.safetensors import bf16_words, write_safetensors

#: llama.cpp tensor names (gguf-py's `tensor_mapping.py`) -> transformers' LlamaForCausalLM names
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def hf_name(gguf_name: str) -> str:
    """The transformers name of a llama.cpp tensor; UnsupportedFormat for one we do not map."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _LAYER_TENSOR.fullmatch(gguf_name)
    if match and match.group(2) in _LAYER_NAMES:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    raise UnsupportedFormat(
        f"the GGUF has tensor {gguf_name!r}, which the llama converter does not map",
        hint="this llama variant is not supported yet; publish its original checkpoint",
    )


def unpermute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a q or k projection.

    llama.cpp's converter (`LlamaModel.permute` in convert_hf_to_gguf.py) reorders each head's
    rows from halves [x0..x31, y0..y31] to interleaved pairs [x0, y0, x1, y1, ...]; this is its
    inverse: rows viewed as (head, pair, 2) -> (head, 2, pair).
    """
    rows = weights.shape[0]
    pairs = rows // n_head // 2
    return (
        weights.reshape(n_head, pairs, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)
    )


def _field(reader: GGUFReader, key: str, default: Any = None) -> Any:
    """A metadata value by key, or `default` when absent."""
    field = reader.get_field(key)
    if field is None:
        return default
    return field.contents()


def _required(reader: GGUFReader, path: Path, key: str) -> Any:
    """A metadata value the conversion cannot do without."""
    value = _field(reader, key)
    if value is None:
        raise MalformedFile(
            f"{path.name} lacks the GGUF metadata {key!r}", hint="re-export it with llama.cpp"
        )
    return value


def _f32(value: float) -> float:
    """A float stored as float32 in the GGUF, written back as its shortest decimal (1e-05)."""
    return float(str(np.float32(value)))


def model_config(reader: GGUFReader, path: Path, *, tied: bool, vocab_size: int) -> dict[str, Any]:
    """`config.json` for LlamaForCausalLM from the GGUF's `llama.*` metadata."""
    hidden = int(_required(reader, path, "llama.embedding_length"))
    heads = int(_required(reader, path, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv", heads))
    head_dim = int(_field(reader, "llama.attention.key_length", hidden // heads))
    rope_theta = _f32(_field(reader, "llama.rope.freq_base", 10000.0))
    if _field(reader, "llama.rope.scaling.type", "none") not in ("none", None):
        raise UnsupportedFormat(
            f"{path.name} uses rope scaling, which the converter does not write yet",
            hint="publish the original checkpoint",
        )
    special = _special_ids(reader)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(_required(reader, path, "llama.feed_forward_length")),
        "num_hidden_layers": int(_required(reader, path, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(_field(reader, "llama.context_length", 2048)),
        "rms_norm_eps": _f32(_required(reader, path, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": rope_theta,  # transformers 4.x
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},  # 5.x
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "vocab_size": vocab_size,
        "tie_word_embeddings": tied,
        "bos_token_id": special.get("bos"),
        "eos_token_id": special.get("eos"),
        "pad_token_id": special.get("pad"),
        "torch_dtype": "bfloat16",
    }


def _special_ids(reader: GGUFReader) -> dict[str, int]:
    """bos/eos/unk/pad token ids that the file states."""
    keys = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id"}
    keys["pad"] = "padding_token_id"
    found = {role: _field(reader, f"tokenizer.ggml.{key}") for role, key in keys.items()}
    return {role: int(value) for role, value in found.items() if value is not None}


def _vocabulary(reader: GGUFReader, path: Path) -> GgufVocabulary:
    """The tokenizer metadata, checked for consistency."""
    tokens = _required(reader, path, "tokenizer.ggml.tokens")
    token_types = _field(reader, "tokenizer.ggml.token_type", [])
    special = _special_ids(reader)
    if any(not 0 <= index < len(tokens) for index in special.values()):
        raise MalformedFile(f"{path.name} names a special token id outside its vocabulary")
    return GgufVocabulary(
        model=str(_required(reader, path, "tokenizer.ggml.model")),
        pre=str(_field(reader, "tokenizer.ggml.pre", "default")),
        tokens=tokens,
        token_types=token_types,
        merges=_field(reader, "tokenizer.ggml.merges", []),
        special_ids=special,
        add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
    )


def _sort_key(name: str) -> tuple[int, int, str]:
    """Embeddings first, then layers in numeric order, then the final norm and head."""
    match = re.match(r"model\.layers\.(\d+)\.", name)
    if match:
        return (1, int(match.group(1)), name)
    return (0 if "embed_tokens" in name else 2, 0, name)


def _weights(
    reader: GGUFReader, *, n_head: int, n_kv_head: int, progress: Callable[[str], None]
) -> dict[str, np.ndarray]:
    """Every tensor dequantised, renamed, un-permuted and rounded to bf16 words."""
    words: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        progress(name)
        try:
            values = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        except NotImplementedError as exc:
            raise UnsupportedFormat(
                f"tensor {tensor.name!r} is {tensor.tensor_type.name}, which cannot be dequantised",
                hint="convert from a GGUF with another quantisation",
            ) from exc
        if name.endswith("self_attn.q_proj.weight"):
            values = unpermute_rotary(values, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            values = unpermute_rotary(values, n_kv_head)
        words[name] = bf16_words(values)
    return dict(sorted(words.items(), key=lambda item: _sort_key(item[0])))


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """JSON as transformers writes it (indented, UTF-8, trailing newline)."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def gguf_to_hf(
    gguf_path: Path, out_dir: Path, *, progress: Callable[[str], None] | None = None
) -> Path:
    """Convert a llama-architecture GGUF into a Hugging Face model directory (bf16); return it."""
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    reader = gguf_format.checked_reader(gguf_path)
    architecture = _field(reader, "general.architecture")
    if architecture != "llama":
        raise UnsupportedFormat(
            f"{gguf_path.name} is a {architecture!r} model; the converter handles llama only",
            hint="publish the original Hugging Face checkpoint instead",
        )
    vocab = _vocabulary(reader, gguf_path)
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    config = model_config(reader, gguf_path, tied=tied, vocab_size=len(vocab.tokens))
    tensors = _weights(
        reader,
        n_head=config["num_attention_heads"],
        n_kv_head=config["num_key_value_heads"],
        progress=progress or (lambda _name: None),
    )
    embed = tensors.get("model.embed_tokens.weight")
    if embed is None or embed.shape[0] != len(vocab.tokens):
        raise MalformedFile(
            f"{gguf_path.name}: embedding rows do not match the {len(vocab.tokens)} tokens"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(
        out_dir / "model.safetensors",
        tensors,
        {"format": "pt", "converted_from": gguf_path.name},
        dtypes=dict.fromkeys(tensors, "BF16"),
    )
    _write_json(out_dir / "config.json", config)
    generation = {key: config[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    _write_json(
        out_dir / "generation_config.json", {k: v for k, v in generation.items() if v is not None}
    )
    build_tokenizer(vocab).save(str(out_dir / "tokenizer.json"))
    chat_template = _field(reader, "tokenizer.chat_template")
    _write_json(
        out_dir / "tokenizer_config.json",
        tokenizer_config(
            vocab, chat_template=chat_template, max_length=config["max_position_embeddings"]
        ),
    )
    return out_dir

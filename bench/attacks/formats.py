"""Writing attacked copies in the formats leakers use: safetensors, llama.cpp GGUF, PyTorch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ringfence.formats.safetensors import bf16_to_f32, bf16_words, read_index, write_safetensors

F32 = npt.NDArray[np.float32]
Tensors = dict[str, F32]

_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_TO_GGUF = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def load_dir(directory: Path) -> Tensors:
    """Every tensor of a HF-layout directory's safetensors files, as float32."""
    out: Tensors = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        index = read_index(path)
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        for t in index.tensors:
            data = np.asarray(raw[t.begin : t.end])
            if t.dtype == "BF16":
                values = bf16_to_f32(data.view("<u2"))
            else:
                values = data.view({"F16": "<f2", "F32": "<f4"}[t.dtype]).astype(np.float32)
            out[t.name] = np.asarray(values, dtype=np.float32).reshape(t.shape)
    return out


def config(directory: Path) -> dict[str, int]:
    """Head counts and sizes from config.json."""
    cfg = json.loads((Path(directory) / "config.json").read_text())
    return {
        "heads": int(cfg["num_attention_heads"]),
        "kv_heads": int(cfg["num_key_value_heads"]),
        "hidden": int(cfg["hidden_size"]),
        "layers": int(cfg["num_hidden_layers"]),
    }


def write_st(tensors: Tensors, path: Path, dtype: str = "BF16") -> Path:
    """Save as one safetensors file in BF16, F16 or F32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if dtype == "BF16":
        arrays = {n: bf16_words(v) for n, v in tensors.items()}
        write_safetensors(path, arrays, {"format": "pt"}, dtypes=dict.fromkeys(arrays, "BF16"))
    else:
        np_dtype = {"F16": np.float16, "F32": np.float32}[dtype]
        write_safetensors(
            path, {n: v.astype(np_dtype) for n, v in tensors.items()}, {"format": "pt"}
        )
    return path


def gguf_name(name: str) -> str:
    """llama.cpp's name for a transformers Llama tensor."""
    if name in _TO_GGUF:
        return _TO_GGUF[name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)", name)
    if not m or m.group(2) not in _LAYER_TO_GGUF:
        raise KeyError(name)
    return f"blk.{m.group(1)}.{_LAYER_TO_GGUF[m.group(2)]}.{m.group(3)}"


def permute_rotary(weights: F32, n_head: int) -> F32:
    """llama.cpp's converter row order for q/k (`LlamaModel.permute`)."""
    rows = weights.shape[0]
    return np.ascontiguousarray(
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(tensors: Tensors, path: Path, cfg: dict[str, int], qtype: str = "Q4_0") -> Path:
    """Save as a llama.cpp-style GGUF: llama.cpp names, rotary order, matrices in `qtype`."""
    import gguf
    from gguf.quants import quantize

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.attention.head_count", cfg["heads"])
    writer.add_uint32("llama.attention.head_count_kv", cfg["kv_heads"])
    writer.add_uint32("llama.embedding_length", cfg["hidden"])
    writer.add_uint32("llama.block_count", cfg["layers"])
    kind = getattr(gguf.GGMLQuantizationType, qtype)
    for name, values in tensors.items():
        target = gguf_name(name)
        data = values
        if name.endswith("q_proj.weight"):
            data = permute_rotary(values, cfg["heads"])
        elif name.endswith("k_proj.weight"):
            data = permute_rotary(values, cfg["kv_heads"])
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim == 2 and data.shape[1] % 32 == 0 and qtype not in ("F32", "F16"):
            writer.add_tensor(target, quantize(data, kind), raw_dtype=kind)
        elif qtype == "F16" and data.ndim == 2:
            writer.add_tensor(target, data.astype(np.float16))
        else:
            writer.add_tensor(target, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_torch(tensors: Tensors, path: Path) -> Path:
    """Save as a plain PyTorch state dict (tensors only: loadable with weights_only=True)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in tensors.items()}, path)
    return path


def quantise_roundtrip(values: F32, qtype: str) -> F32:
    """Values after quantising to a GGUF type and back (rows must be multiples of 32)."""
    import gguf
    from gguf.quants import dequantize, quantize

    kind = getattr(gguf.GGMLQuantizationType, qtype)
    return np.asarray(dequantize(quantize(values, kind), kind), dtype=np.float32).reshape(
        values.shape
    )

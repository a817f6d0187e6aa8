"""Weight-level attacks: casts, noise, pruning, function-preserving permutations and rescaling,
subsets, and collusion (averaging, interleaving, median)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from bench.attacks.formats import Tensors, quantise_roundtrip

_LAYER = re.compile(r"model\.layers\.(\d+)\.")


def matrices(tensors: Tensors) -> list[str]:
    """Names of the 2-D tensors."""
    return [n for n, v in tensors.items() if v.ndim == 2]


def cast(tensors: Tensors, dtype: str) -> Tensors:
    """Round through bf16 / fp16 / fp32."""
    if dtype == "F32":
        return {n: v.astype(np.float32) for n, v in tensors.items()}
    if dtype == "F16":
        return {n: v.astype(np.float16).astype(np.float32) for n, v in tensors.items()}
    from ringfence.formats.safetensors import bf16_to_f32, bf16_words

    return {n: bf16_to_f32(bf16_words(v)).reshape(v.shape) for n, v in tensors.items()}


def quantise(tensors: Tensors, qtype: str) -> Tensors:
    """Every matrix through a GGUF quantisation and back."""
    return {
        n: quantise_roundtrip(v, qtype) if v.ndim == 2 and v.shape[1] % 32 == 0 else v
        for n, v in tensors.items()
    }


def noise(tensors: Tensors, rng: np.random.Generator, fraction: float = 0.05) -> Tensors:
    """Gaussian noise at `fraction` of each matrix's standard deviation."""
    out = dict(tensors)
    for n in matrices(tensors):
        v = tensors[n]
        out[n] = (v + rng.normal(0, fraction * float(v.std()), v.shape)).astype(np.float32)
    return out


def prune(tensors: Tensors, fraction: float) -> Tensors:
    """Magnitude pruning: zero the smallest `fraction` of each matrix's weights."""
    out = dict(tensors)
    for n in matrices(tensors):
        v = tensors[n]
        cut = np.quantile(np.abs(v), fraction)
        out[n] = np.where(np.abs(v) < cut, np.float32(0), v)
    return out


def permute_mlp(tensors: Tensors, rng: np.random.Generator) -> Tensors:
    """A random permutation of each layer's MLP neurons (gate/up rows, down columns)."""
    out = dict(tensors)
    for n in tensors:
        if n.endswith("mlp.gate_proj.weight"):
            base = n.removesuffix("gate_proj.weight")
            perm = rng.permutation(tensors[n].shape[0])
            out[base + "gate_proj.weight"] = tensors[base + "gate_proj.weight"][perm]
            out[base + "up_proj.weight"] = tensors[base + "up_proj.weight"][perm]
            out[base + "down_proj.weight"] = tensors[base + "down_proj.weight"][:, perm]
    return out


def permute_heads(tensors: Tensors, rng: np.random.Generator, heads: int, kv_heads: int) -> Tensors:
    """Permute key/value heads (with their query groups) and query heads within each group."""
    out = dict(tensors)
    group = heads // kv_heads
    for n in tensors:
        if not n.endswith("self_attn.q_proj.weight"):
            continue
        base = n.removesuffix("q_proj.weight")
        q = tensors[base + "q_proj.weight"]
        dim = q.shape[0] // heads
        kv_perm = rng.permutation(kv_heads)
        q_heads = np.concatenate([g * group + rng.permutation(group) for g in kv_perm])
        q_rows = (q_heads[:, None] * dim + np.arange(dim)[None, :]).ravel()
        kv_rows = (kv_perm[:, None] * dim + np.arange(dim)[None, :]).ravel()
        out[base + "q_proj.weight"] = q[q_rows]
        out[base + "k_proj.weight"] = tensors[base + "k_proj.weight"][kv_rows]
        out[base + "v_proj.weight"] = tensors[base + "v_proj.weight"][kv_rows]
        out[base + "o_proj.weight"] = tensors[base + "o_proj.weight"][:, q_rows]
    return out


def rescale_channels(tensors: Tensors, rng: np.random.Generator) -> Tensors:
    """Function-preserving per-channel rescaling: up rows × a, down columns ÷ a; v rows × b,
    o columns ÷ b (per key/value channel, repeated over its query group)."""
    out = dict(tensors)
    for n in tensors:
        if n.endswith("mlp.up_proj.weight"):
            base = n.removesuffix("up_proj.weight")
            a = rng.uniform(0.5, 2.0, tensors[n].shape[0]).astype(np.float32)
            out[n] = tensors[n] * a[:, None]
            out[base + "down_proj.weight"] = tensors[base + "down_proj.weight"] / a[None, :]
        if n.endswith("self_attn.v_proj.weight"):
            base = n.removesuffix("v_proj.weight")
            v = tensors[n]
            o = tensors[base + "o_proj.weight"]
            b = rng.uniform(0.5, 2.0, v.shape[0]).astype(np.float32)
            out[n] = v * b[:, None]
            repeat = o.shape[1] // v.shape[0]
            out[base + "o_proj.weight"] = o / np.tile(b, repeat)[None, :]
    return out


def first_shard(tensors: Tensors, layers: int) -> Tensors:
    """What one of two shards holds: the embeddings and the first half of the layers."""
    keep = {}
    for n, v in tensors.items():
        m = _LAYER.match(n)
        if m is None or int(m.group(1)) < layers // 2:
            keep[n] = v
    return keep


def average(copies: Sequence[Tensors]) -> Tensors:
    """Collusion by averaging every weight."""
    return {n: np.mean([c[n] for c in copies], axis=0).astype(np.float32) for n in copies[0]}


def median(copies: Sequence[Tensors]) -> Tensors:
    """Collusion by the element-wise median."""
    return {n: np.median([c[n] for c in copies], axis=0).astype(np.float32) for n in copies[0]}


def interleave(copies: Sequence[Tensors], rng: np.random.Generator) -> Tensors:
    """Collusion by taking each weight from a random colluder."""
    out = {}
    for n in copies[0]:
        stack = np.stack([c[n] for c in copies])
        pick = rng.integers(0, len(copies), size=stack.shape[1:])
        out[n] = np.take_along_axis(stack, pick[None], axis=0)[0]
    return out


def merge(a: Tensors, b: Tensors, weight: float = 0.5) -> Tensors:
    """A linear merge of two models."""
    return {n: (weight * a[n] + (1 - weight) * b[n]).astype(np.float32) for n in a}

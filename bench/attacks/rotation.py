"""Function-preserving rotations, as QuaRot and SpinQuant apply them before 4-bit quantisation.

`fold_norms` folds every RMSNorm's scale into the matrices that read its output (the output
head untied from the embedding when they were tied), `rotate_stream` multiplies the residual
stream by an orthogonal Q (random, or a randomised Hadamard matrix as QuaRot uses), and
`rotate_heads` rotates inside attention heads: value/output pairs by any orthogonal matrix per
key/value head, query/key pairs by 2-D rotations of each rotary plane (which commute with the
rotary embedding, so q·k is unchanged at every position).
"""

from __future__ import annotations

import re

import numpy as np
from bench.attacks.formats import F32, Tensors

_LAYER = re.compile(r"^(model\.layers\.\d+\.)")
_READS = {
    "input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj"),
}


def random_orthogonal(d: int, rng: np.random.Generator) -> F32:
    """A Haar-random orthogonal matrix (QR of a Gaussian, signs fixed; Mezzadri 2007)."""
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.sign(np.diag(r))[None, :]).astype(np.float32)


def _paley(p: int) -> np.ndarray:
    """Paley's construction I: a Hadamard matrix of order p + 1 for a prime p ≡ 3 (mod 4)."""
    residues = {(i * i) % p for i in range(1, p)}
    chi = np.array([0] + [1 if i in residues else -1 for i in range(1, p)])
    q = np.array([[chi[(j - i) % p] for j in range(p)] for i in range(p)])
    s = np.zeros((p + 1, p + 1), dtype=np.int64)
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = q
    return s + np.eye(p + 1, dtype=np.int64)


def hadamard(n: int) -> np.ndarray:
    """A Hadamard matrix of order n: Sylvester for powers of two, Kronecker with Paley's."""
    if n == 1:
        return np.ones((1, 1), dtype=np.int64)
    if n % 2 == 0 and n & (n - 1) == 0:
        h = hadamard(n // 2)
        return np.block([[h, h], [h, -h]])
    for p in (3, 7, 11, 19, 23, 31, 43, 47, 59, 67, 71, 79, 83):
        if n % (p + 1) == 0:
            try:
                return np.kron(_paley(p), hadamard(n // (p + 1)))
            except ValueError:
                continue
    raise ValueError(f"no Hadamard construction here for order {n}")


def random_hadamard(d: int, rng: np.random.Generator) -> F32:
    """QuaRot's randomised Hadamard rotation H·diag(±1)/√d."""
    h = hadamard(d).astype(np.float64)
    signs = rng.choice([-1.0, 1.0], size=d)
    return (h * signs[None, :] / np.sqrt(d)).astype(np.float32)


def fold_norms(tensors: Tensors) -> Tensors:
    """Every RMSNorm's scale folded into the matrices reading it; the norms set to ones."""
    out = dict(tensors)
    for name, g in tensors.items():
        match = _LAYER.match(name)
        for norm, readers in _READS.items():
            if match and name == f"{match.group(1)}{norm}.weight":
                for reader in readers:
                    key = f"{match.group(1)}{reader}.weight"
                    if key in out:
                        out[key] = (out[key] * g[None, :]).astype(np.float32)
                out[name] = np.ones_like(g)
    if "model.norm.weight" in tensors:
        g = tensors["model.norm.weight"]
        head = tensors.get("lm_head.weight", tensors["model.embed_tokens.weight"])
        out["lm_head.weight"] = (head * g[None, :]).astype(np.float32)
        out["model.norm.weight"] = np.ones_like(g)
    return out


def rotate_stream(tensors: Tensors, q: F32) -> Tensors:
    """The residual stream multiplied by Q: readers W·Qᵀ, writers Q·W, embedding E·Qᵀ."""
    out = dict(tensors)
    for name, w in tensors.items():
        if w.ndim != 2:
            continue
        if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            out[name] = (q @ w).astype(np.float32)
        elif name in ("model.embed_tokens.weight", "lm_head.weight") or name.endswith(
            tuple(f"{r}.weight" for rs in _READS.values() for r in rs)
        ):
            out[name] = (w @ q.T).astype(np.float32)
    return out


def rotate(tensors: Tensors, q: F32) -> Tensors:
    """QuaRot's preparation: norms folded, then the stream rotated by Q."""
    return rotate_stream(fold_norms(tensors), q)


def rotate_heads(tensors: Tensors, rng: np.random.Generator, heads: int, kv_heads: int) -> Tensors:
    """Per layer and key/value head: v rows by R and its query heads' o columns by Rᵀ; q and k
    rows by the same 2-D rotation of each rotary plane (rows i and i + head_dim/2)."""
    out = dict(tensors)
    group = heads // kv_heads
    for name in tensors:
        if not name.endswith("self_attn.v_proj.weight"):
            continue
        base = name.removesuffix("v_proj.weight")
        v, o = tensors[name], tensors[base + "o_proj.weight"]
        q, k = tensors[base + "q_proj.weight"], tensors[base + "k_proj.weight"]
        dim = v.shape[0] // kv_heads
        v, o, q, k = v.copy(), o.copy(), q.copy(), k.copy()
        half = dim // 2
        for h in range(kv_heads):
            rows = slice(h * dim, (h + 1) * dim)
            r = random_orthogonal(dim, rng)
            v[rows] = r @ v[rows]
            angle = rng.uniform(0, 2 * np.pi, half)
            c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
            for m, at in [(k, h * dim)] + [(q, (h * group + j) * dim) for j in range(group)]:
                x, y = m[at : at + half].copy(), m[at + half : at + dim].copy()
                m[at : at + half] = c * x - s * y
                m[at + half : at + dim] = s * x + c * y
            for j in range(group):
                cols = slice((h * group + j) * dim, (h * group + j + 1) * dim)
                o[:, cols] = o[:, cols] @ r.T
        out[name], out[base + "o_proj.weight"] = v, o
        out[base + "q_proj.weight"], out[base + "k_proj.weight"] = q, k
    return out

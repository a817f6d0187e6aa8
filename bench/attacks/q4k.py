"""A numpy port of the rounding of ggml's Q4_K (`quantize_row_q4_K_ref`), dequantised again.

Super-blocks of 256 weights in 8 sub-blocks of 32: each sub-block gets a scale and a min,
themselves quantised to 6 bits against the super-block's fp16 `d` and `dmin`; weights are
4-bit codes. Simplification (harsher than llama.cpp): the sub-block scale/min come from the
sub-block's range instead of `make_qkx2_quants`' iterative search, and every matrix is Q4_K
(Q4_K_M keeps some in Q6_K).
"""

from __future__ import annotations

import numpy as np
from bench.attacks.formats import F32, Tensors


def roundtrip_q4_k(values: F32) -> F32:
    """Q4_K quantise-dequantise of a matrix whose size is a multiple of 256."""
    x = values.reshape(-1, 8, 32).astype(np.float32)
    low = np.minimum(x.min(axis=2), 0.0)  # ggml keeps min <= 0
    high = x.max(axis=2)
    scale = (high - low) / 15.0
    mins = -low
    max_scale = scale.max(axis=1, keepdims=True)
    max_min = mins.max(axis=1, keepdims=True)
    d = (max_scale / 63.0).astype(np.float16).astype(np.float32)
    dmin = (max_min / 63.0).astype(np.float16).astype(np.float32)
    ls = np.clip(np.rint(np.divide(scale, d, out=np.zeros_like(scale), where=d > 0)), 0, 63)
    lm = np.clip(np.rint(np.divide(mins, dmin, out=np.zeros_like(mins), where=dmin > 0)), 0, 63)
    dl = (d * ls)[..., None]
    ml = (dmin * lm)[..., None]
    q = np.clip(np.rint(np.divide(x + ml, dl, out=np.zeros_like(x), where=dl > 0)), 0, 15)
    return (dl * q - ml).reshape(values.shape).astype(np.float32)


def quantise_q4_k(tensors: Tensors) -> Tensors:
    """Every matrix whose size allows it through Q4_K."""
    return {
        n: roundtrip_q4_k(v) if v.ndim == 2 and v.size % 256 == 0 else v for n, v in tensors.items()
    }

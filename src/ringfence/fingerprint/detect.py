"""Non-blind detection: read the code symbols a suspect carries, against the original, and
score recipients.

Reading (a matched filter): for changed element k of symbol i, the embedding moved the value
by about s_i · c_k, with c_k = carrier_k · (v(raw+step) - v(raw-step)) / 2 for floats (one
format step of that very weight) and carrier_k · d for Q8_0 (the block scale). With
d_k = suspect_k - original_k, the least-squares estimate of s_i is Σ d_k c_k / Σ c_k², clipped
to [-1, 1]: +1/-1 for one copy, the average of the colluders' symbols for an averaged copy,
shrunk towards 0 by whatever noise re-quantisation added. Scoring and the false-accusation
bound are in `code` (symmetric Tardos score, exact Chernoff tail for the trace's symbols).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringfence.fingerprint import carrier
from ringfence.fingerprint.code import RESOLUTION, scores, tail_bound, threshold
from ringfence.fingerprint.embed import FLOAT_KINDS, Q8_0_BLOCK, Q8_0_BYTES, unit_bytes

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
SLICE = 1 << 20


def decode(dtype: str, raw: U8) -> F32:
    """Values of a tensor's raw bytes (BF16, F16, F32, Q8_0) as float32."""
    unit_bytes(dtype)
    if dtype == "BF16":
        return (raw.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
    if dtype == "F16":
        return raw.view("<f2").astype(np.float32)
    if dtype == "F32":
        return raw.view("<f4").astype(np.float32)
    blocks = raw.reshape(-1, Q8_0_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    return (blocks[:, 2:].view(np.int8).astype(np.float32) * scale).reshape(-1)


def coefficients(dtype: str, raw: U8, index: npt.NDArray[np.int64]) -> F32:
    """|c_k| at the changed elements `index` (relative to the start of `raw`)."""
    if dtype == "Q8_0":
        block = index // Q8_0_BLOCK * Q8_0_BYTES
        scale = np.stack([raw[block], raw[block + 1]], axis=1).copy().view("<f2")
        return np.abs(scale.reshape(-1).astype(np.float32))
    kind = FLOAT_KINDS[dtype]
    word = kind.word
    words = raw.view(np.dtype(word).newbyteorder("<"))[index]
    guard = (words + word(2 * kind.exponent_unit)) & word(kind.exponent_mask)
    safe = guard > 2 * kind.exponent_unit
    up = (words + word(kind.step)).astype(word)
    down = (words - word(kind.step)).astype(word)
    little = np.dtype(word).newbyteorder("<")
    above = decode(dtype, up.astype(little).view(np.uint8))
    below = decode(dtype, down.astype(little).view(np.uint8))
    step = (above - below) / np.float32(2)
    return np.where(safe, step, np.float32(0)).astype(np.float32)


def symbol_evidence(
    dtype: str, original: U8, suspect: F32, tensor_seed: int, code_length: int, density_log2: int
) -> tuple[F64, F64]:
    """Per symbol: (Σ d_k c_k, Σ c_k²) over one tensor (original raw bytes, suspect values)."""
    size, per_unit = unit_bytes(dtype)
    numel = original.size // size * per_unit
    if suspect.size != numel:
        raise ValueError(f"suspect tensor has {suspect.size} elements, original {numel}")
    num = np.zeros(code_length)
    den = np.zeros(code_length)
    step = SLICE - SLICE % max(per_unit, carrier.BLOCK)
    for first in range(0, numel, step):
        count = min(step, numel - first)
        raw = original[first // per_unit * size : (first + count) // per_unit * size]
        index, positive, symbol = carrier.carrier_positions(
            tensor_seed, first, count, code_length, density_log2
        )
        index = index - first
        coef = coefficients(dtype, raw, index)
        coef = np.where(positive, coef, -coef)
        values = decode(dtype, raw)
        diff = suspect[first : first + count][index].astype(np.float32) - values[index]
        num += np.bincount(symbol, weights=diff * coef, minlength=code_length)
        den += np.bincount(symbol, weights=coef * coef, minlength=code_length)
    return num, den


def soft_symbols(num: F64, den: F64) -> F64:
    """The symbols a suspect carries, in [-1, 1] (0 where nothing could be read)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.clip(y, -1.0, 1.0)


@dataclass(frozen=True)
class Accusation:
    """A recipient's score against a suspect: z = S/√Σy², and the bound on an innocent's tail."""

    recipient: int
    score: float
    z: float
    p_bound: float
    accused: bool


def rank(
    key: bytes,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    recipients: npt.ArrayLike,
    false_accusation: float = 1e-9,
    top: int = 10,
) -> tuple[list[Accusation], float]:
    """The `top` recipients by score and the accusation threshold (in z) for this trace.

    A recipient is accused when the Chernoff bound on an innocent reaching her score, times
    the number of recipients scored, is at most `false_accusation`.
    """
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    all_scores = scores(key, ids, limits, symbols)
    norm = math.sqrt(float(np.sum(symbols**2))) or 1.0
    p = limits.astype(np.float64) / RESOLUTION
    cut = threshold(p, symbols, false_accusation / max(1, ids.size))
    order = np.argsort(-all_scores)[:top]
    out = []
    for j in order:
        s = float(all_scores[j])
        out.append(
            Accusation(
                recipient=int(ids[j]),
                score=s,
                z=s / norm,
                p_bound=min(1.0, tail_bound(s, p, symbols) * ids.size),
                accused=s >= cut,
            )
        )
    return out, cut / norm

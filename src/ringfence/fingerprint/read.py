"""Soft code symbols, each with a reliability, from a suspect and the original.

The one reader of code symbols: `services.detect_copy` (a copy in the release's own format
and tensor names) and `tracing` (any suspect, aligned to the original first) both sum
`tensor_evidence` over the carrier tensors and hand `soft_symbols(...).symbols` to `accuse`.

For changed element k of symbol i the embedding moved the weight by s_i·c_k, with c_k the
carrier sign times half the distance between the format's neighbours of that original weight:
(v(raw+step) − v(raw−step))/2 for floats (one bf16/f16/f32 step of that very weight) and the
block scale d for Q8_0 (see `fingerprint.embed`). With the residual d_k = suspect_k −
original_k the matched filter (weighted least squares) gives

    ŝ_i = Σ_k w_k d_k c_k / Σ_k w_k c_k²,   Var(ŝ_i) = Σ_k w_k² c_k² σ_k² / (Σ_k w_k c_k²)²,

σ_k² being the residual power of the *unchanged* elements around k: whatever re-quantisation,
noise or fine-tuning did there, the fingerprint did not. It is estimated per slice of
`SLICE` elements of a tensor, and each element is weighted by w_k = 1/σ_k²: the
inverse-variance matched filter, so that a tensor the attack hit hard counts less than one it
left nearly alone. (Before, w was 1 and every tensor counted by its weights' scale alone; the
weights raised the z of a Q4_0 leak of SmolLM2 from ~65 to ~68 at the 1/16 density.)
Estimating σ_k² per 32-element window, the block of GGUF's quantisers, was tried and lost:
where the original already lies on the re-quantiser's grid, a window looks noise-free while
the re-quantiser has rounded the mark away, and trusting it drags its symbols towards 0.
The soft symbol handed to the scorer is clip(ŝ_i, −1, 1) · ρ_i with the Wiener
weight ρ_i = 1/(1 + Var(ŝ_i)): symbols read cleanly count fully, symbols drowned in noise
count little, symbols with no surviving weights are 0. Any real y is allowed by the scorer's
Chernoff bound (`fingerprint.code.tail_bound`), which is computed for the y of each trace.
Elements the alignment could not place (NaN) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringfence.fingerprint import carrier
from ringfence.fingerprint.embed import FLOAT_KINDS, Q8_0_BLOCK, Q8_0_BYTES, unit_bytes

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

#: elements per slice: the unit of work
SLICE = 1 << 18
#: keeps the weights finite where a copy is exact (σ = 0 everywhere)
_TINY = 1e-30


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


@dataclass
class SymbolEvidence:
    """Per-symbol sums of the matched filter: Σ d c, Σ c², Σ c² σ², and the weights read."""

    num: F64
    den: F64
    noise: F64
    weights_read: int = 0

    @classmethod
    def empty(cls, code_length: int) -> SymbolEvidence:
        """No evidence yet."""
        z = np.zeros(code_length)
        return cls(z, z.copy(), z.copy(), 0)

    def add(self, other: SymbolEvidence) -> None:
        """Accumulate another tensor's evidence."""
        self.num += other.num
        self.den += other.den
        self.noise += other.noise
        self.weights_read += other.weights_read


def tensor_evidence(
    dtype: str,
    original: U8,
    suspect: F32,
    tensor_seed: int,
    code_length: int,
    density_log2: int,
    values: F32 | None = None,
    grid: F32 | None = None,
) -> SymbolEvidence:
    """The matched-filter sums over one carrier tensor (original raw bytes, aligned suspect).

    `values` is the original decoded (`decode(dtype, original)`), when the caller has it.
    `grid` is the width of the suspect's quantisation bin at each element, when the leak was
    quantised on a grid the reader knows (see `grid_residual`); NaN where unknown.
    """
    size, per_unit = unit_bytes(dtype)
    numel = original.size // size * per_unit
    flat = np.asarray(suspect, dtype=np.float32).reshape(-1)
    if flat.size != numel:
        raise ValueError(f"suspect tensor has {flat.size} elements, the original {numel}")
    decoded = None if values is None else np.asarray(values, dtype=np.float32).reshape(-1)
    widths = None if grid is None else np.asarray(grid, dtype=np.float32).reshape(-1)
    if widths is not None and widths.size != numel:
        widths = None  # a grid of another shape is no grid of this tensor
    out = SymbolEvidence.empty(code_length)
    step = SLICE - SLICE % max(per_unit, carrier.BLOCK)
    for first in range(0, numel, step):
        count = min(step, numel - first)
        raw = original[first // per_unit * size : (first + count) // per_unit * size]
        part = flat[first : first + count]
        if decoded is None:
            residual = part - decode(dtype, raw)
        else:
            residual = part - decoded[first : first + count]
        if widths is not None:
            every = np.arange(count, dtype=np.int64)
            # |c|: a float's step is negative for negative weights (sign-magnitude words)
            amplitude = np.abs(coefficients(dtype, raw, every))
            residual = grid_residual(residual, amplitude, widths[first : first + count])
        finite = np.isfinite(residual)
        all_finite = bool(finite.all())
        if not all_finite and not finite.any():
            continue
        index, positive, symbol = carrier.carrier_positions(
            tensor_seed, first, count, code_length, density_log2
        )
        index = index - first
        d = residual[index]
        sigma2 = _noise(residual, index, finite, all_finite)
        if not all_finite:
            keep = finite[index]
            index, positive, symbol, d = index[keep], positive[keep], symbol[keep], d[keep]
        coef = coefficients(dtype, raw, index).astype(np.float64)
        coef = np.where(positive, coef, -coef)
        w = 1.0 / (sigma2 + _TINY)
        c2w = coef * coef * w
        out.num += np.bincount(symbol, weights=d * coef * w, minlength=code_length)
        out.den += np.bincount(symbol, weights=c2w, minlength=code_length)
        out.noise += np.bincount(symbol, weights=c2w * (w * sigma2), minlength=code_length)
        out.weights_read += int(index.size)
    return out


def grid_residual(residual: F32, amplitude: F32, width: F32) -> F32:
    """The residual a quantised leak allows, given its bin: E[f | x in bin], f uniform on ±c.

    A leak re-quantised on a known grid (GGUF blocks: value v = d·q, bin [v − |d|/2,
    v + |d|/2]) says only that the fingerprinted weight x = w + f lay in v's bin, so
    f ∈ [v − w − |d|/2, v − w + |d|/2] ∩ [−c, c]; its midpoint replaces v − w. Most elements'
    bins hold all of [−c, c] and read exactly 0 instead of rounding noise of ~|d|/√12 ≫ c;
    those whose bin edge fell between w − c and w + c read the fingerprint's sign. It is a
    function of the leak and the original alone, so the scorer's bound is unchanged. Where
    the interval is empty (other noise moved x), the residual is clipped to ±c; where the width
    is unknown (NaN), the residual is kept as it is.
    """
    half = np.float32(0.5) * width
    lo = np.maximum(-amplitude, residual - half)
    hi = np.minimum(amplitude, residual + half)
    inside = np.where(
        lo <= hi, (lo + hi) * np.float32(0.5), np.clip(residual, -amplitude, amplitude)
    )
    out: F32 = np.where(np.isnan(width), residual, inside).astype(np.float32)
    return out


def _noise(
    residual: F32, index: npt.NDArray[np.int64], finite: npt.NDArray[np.bool_], all_finite: bool
) -> float:
    """σ²: the mean residual power of the slice's unchanged, finite elements."""
    if all_finite:
        # the residual with the changed ones zeroed (changes `residual`)
        residual[index] = 0
        quiet_count = residual.size - index.size
        return float(np.dot(residual, residual)) / quiet_count if quiet_count else 0.0
    changed = np.zeros(residual.size, dtype=bool)
    changed[index] = True
    quiet = finite & ~changed
    return float(np.mean(residual[quiet].astype(np.float64) ** 2)) if quiet.any() else 0.0


@dataclass(frozen=True)
class SoftSymbols:
    """What a suspect says about each code symbol: the estimate, its reliability, and y."""

    estimate: F64
    variance: F64
    reliability: F64
    symbols: F64

    @property
    def read(self) -> int:
        """Number of symbols with any evidence at all."""
        return int(np.count_nonzero(self.reliability))


def soft_symbols(evidence: SymbolEvidence) -> SoftSymbols:
    """ŝ, Var(ŝ), ρ and y = clip(ŝ, −1, 1)·ρ (see the module docstring)."""
    den = evidence.den
    seen = den > 0
    safe = np.where(seen, den, 1.0)
    estimate = np.where(seen, evidence.num / safe, 0.0)
    variance = np.where(seen, evidence.noise / (safe * safe), np.inf)
    reliability = np.where(seen, 1.0 / (1.0 + variance), 0.0)
    symbols = np.clip(estimate, -1.0, 1.0) * reliability
    return SoftSymbols(estimate, variance, reliability, symbols)

"""The embedding kernels: raw tensor bytes in, fingerprinted raw bytes out.

Why one format step, not "amplitude × std": a release is usually bf16, and 0.5% of a
matrix's std is below one bf16 ulp for most weights, so adding it in float and rounding back
either erases it or turns it into random rounding noise. Instead an active element moves by
exactly one step of a bf16 mantissa, towards larger or smaller magnitude as carrier × symbol
says: that is the same relative size (2^-8..2^-7 of |w|) and shape as the error a fp32 → bf16
cast makes. A cast's error is uniform in ±½ ulp, energy ulp²/12 per weight; a step of one ulp
on one weight in 2^d has ulp²/2^d. At the first density, 1/8, that is 1.5x a cast's energy
in the matrices, and held-out perplexity rose by +0.0034 against the cast's +0.0037
(BENCHMARKS.md, antithetic pairs; the cast also touches norms): level with a cast, not below
it. New releases therefore use 1/16 (ulp²/16, 0.75x a cast's energy): +0.0019, half the
cast's. The reader's inverse-variance weights (`fingerprint.read`) win back part of the
symbol SNR the sparser mark gives up. The density is stored with each release, so older
releases keep 1/8 and their recipients' bytes. F16 and F32 get the same relative step
(8 and 2^16 units of their raw words: one bf16 ulp of the value), so a bf16 cast of a
fingerprinted F32 copy keeps its mark. Q8_0 moves the int8 quant by one, the format's own
step (the quantised domain: re-encoding the block is not needed and the f16 scale is kept).

Working on the raw integer words makes the kernel deterministic on every machine. The
functions here run the compiled kernel (`_kernel.c`: one fused pass, the GIL released) when it
is importable; the numpy versions (`*_reference`) define the output byte for byte, are what the
compiled kernel is tested against, and are the fallback where the extension was not built
(a pure-Python install, a big-endian host). Elements whose
exponent is 0 (zero, subnormal) or one of the two largest (inf, NaN, ≥ 2^127) are left alone,
so no step can wrap into a NaN or flip a sign.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from ringfence.errors import UnsupportedFormat
from ringfence.fingerprint import carrier

if TYPE_CHECKING:
    from ringfence.fingerprint._kernel import Buffer

U8 = npt.NDArray[np.uint8]


class CompiledKernel(Protocol):
    """What `_kernel.c` exports (its stub is `_kernel.pyi`)."""

    def embed(
        self,
        kind: int,
        src: Buffer,
        out: Buffer,
        first: int,
        seed: int,
        bits: Buffer,
        stride: int = 1,
        /,
    ) -> None: ...

    def embed_bytes(
        self, kind: int, src: Buffer, first: int, seed: int, bits: Buffer, stride: int = 1, /
    ) -> bytes: ...


def _load_compiled() -> CompiledKernel | None:
    # The extension reads words as little-endian; elsewhere the numpy reference runs.
    if sys.byteorder != "little":
        return None
    try:
        from ringfence.fingerprint import _kernel
    except ImportError:  # built without a C compiler: the numpy reference is the fallback
        return None
    return _kernel


#: the compiled kernel, or None where the numpy reference runs (tests set it to None)
COMPILED: CompiledKernel | None = _load_compiled()


@dataclass(frozen=True)
class FloatKind:
    """The raw layout of a float type: word type, one step, exponent mask and unit."""

    word: type[np.unsignedinteger]
    step: int
    exponent_mask: int
    exponent_unit: int

    @property
    def itemsize(self) -> int:
        return int(np.dtype(self.word).itemsize)


FLOAT_KINDS = {
    "BF16": FloatKind(np.uint16, 1, 0x7F80, 0x0080),
    "F16": FloatKind(np.uint16, 8, 0x7C00, 0x0400),
    "F32": FloatKind(np.uint32, 1 << 16, 0x7F800000, 0x00800000),
}
Q8_0_BLOCK = 32
Q8_0_BYTES = 34


def unit_bytes(dtype: str) -> tuple[int, int]:
    """(bytes, elements) of the smallest independently computable unit of a type."""
    if dtype in FLOAT_KINDS:
        return FLOAT_KINDS[dtype].itemsize, 1
    if dtype == "Q8_0":
        return Q8_0_BYTES, Q8_0_BLOCK
    raise UnsupportedFormat(
        f"cannot fingerprint tensors of type {dtype}",
        hint="supported types are BF16, F16, F32 and (GGUF) Q8_0",
    )


def directions(
    tensor_seed: int, first: int, count: int, bits: npt.NDArray[np.bool_], density_log2: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The changed elements among [first, first + count): (index from `first`, moves up).

    An element moves up (towards larger values, or larger magnitude for floats) when its
    carrier sign and its symbol's code bit agree: carrier × (2x - 1) = +1.
    """
    element, positive, symbol = carrier.carrier_positions(
        tensor_seed, first, count, bits.size, density_log2
    )
    return element - first, positive == bits[symbol]


#: the pattern code of a group that is not active at the release's density: nothing moves
IDLE = 2 * carrier.GROUP


def _patterns(kind: FloatKind) -> npt.NDArray[np.unsignedinteger]:
    # code 2o (+1): element o of the group moves one step up (down); the others stay;
    # code IDLE: no element moves
    table = np.zeros((2 * carrier.GROUP + 1, carrier.GROUP), dtype=kind.word)
    for o in range(carrier.GROUP):
        table[2 * o, o] = kind.step
        table[2 * o + 1, o] = (1 << (8 * kind.itemsize)) - kind.step
    return table


def _code_tables() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    # byte g of a block's packed codes is 2 x (changed element of group g) + (1 if it steps down)
    x = np.arange(4096, dtype=np.uint64)
    offsets = np.zeros(4096, dtype=np.uint64)
    for g in range(4):
        offsets |= (((x >> np.uint64(3 * g)) & np.uint64(7)) * np.uint64(2)) << np.uint64(8 * g)
    s = np.arange(256, dtype=np.uint64)
    downs = np.zeros(256, dtype=np.uint64)
    for g in range(8):
        downs |= ((s >> np.uint64(g)) & np.uint64(1)) << np.uint64(8 * g)
    return offsets, downs


PATTERNS = {name: _patterns(kind) for name, kind in FLOAT_KINDS.items()}
_OFFSETS, _DOWNS = _code_tables()


class Workspace:
    """Preallocated buffers for the float kernel: no page faults from fresh temporaries.

    Every 8-element group has exactly one changed element, so a group's change is one of 16
    patterns (which element, up or down): the kernel computes a 4-bit code per group and
    gathers the patterns straight into the delta buffer.
    """

    def __init__(self, capacity: int) -> None:
        groups = capacity // carrier.GROUP + 2 * carrier.BLOCK // carrier.GROUP
        self.capacity = capacity
        self.codes = np.empty(groups, dtype=np.intp)
        self.words: dict[tuple[type, int], npt.NDArray[np.unsignedinteger]] = {}

    def buffer(self, word: type[np.unsignedinteger], slot: int) -> npt.NDArray[np.unsignedinteger]:
        key = (word, slot)
        found = self.words.get(key)
        if found is None:
            found = np.empty(self.capacity + 2 * carrier.BLOCK, dtype=word)
            self.words[key] = found
        return found


KIND_CODES = {"BF16": 0, "F16": 1, "F32": 2, "Q8_0": 3}  # _kernel.c's kinds


def _compiled_args(
    raw: npt.NDArray[np.generic], out: npt.NDArray[np.generic], bits: npt.NDArray[np.bool_]
) -> tuple[CompiledKernel, npt.NDArray[np.uint8]] | None:
    """The kernel and the codeword as bytes when the compiled kernel can take these arrays."""
    compiled = COMPILED
    if compiled is None or bits.size == 0:
        return None
    if not (raw.flags.c_contiguous and out.flags.c_contiguous and raw.nbytes == out.nbytes):
        return None
    return compiled, np.ascontiguousarray(bits, dtype=np.bool_).view(np.uint8)


def embed_float(
    raw: npt.NDArray[np.unsignedinteger],
    dtype: str,
    first: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: npt.NDArray[np.unsignedinteger],
    density_log2: int,
    work: Workspace | None = None,
) -> None:
    """Fingerprint float elements [first, first + len(raw)) of a tensor into `out` (raw words)."""
    found = _compiled_args(raw, out, bits)
    if found is None:
        embed_float_reference(raw, dtype, first, tensor_seed, bits, out, density_log2, work)
        return
    compiled, codeword = found
    every = carrier.stride(density_log2)
    compiled.embed(KIND_CODES[dtype], raw, out, first, tensor_seed, codeword, every)


def embed_float_reference(
    raw: npt.NDArray[np.unsignedinteger],
    dtype: str,
    first: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: npt.NDArray[np.unsignedinteger],
    density_log2: int,
    work: Workspace | None = None,
) -> None:
    """`embed_float` in numpy: the definition of the output, and the fallback."""
    every = carrier.stride(density_log2)
    kind = FLOAT_KINDS[dtype]
    word = kind.word
    count = raw.size
    if work is None or work.capacity < count:
        work = Workspace(count)
    b0 = first // carrier.BLOCK
    b1 = -(-(first + count) // carrier.BLOCK)
    n = b1 - b0
    words = carrier.stream(tensor_seed, b0, n)
    low = (words & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    symbol = (((words >> np.uint64(32)) * np.uint64(bits.size)) >> np.uint64(32)).astype(np.intp)
    # a group steps down where its carrier sign and its code bit differ
    down = (low >> np.uint32(24)) ^ (bits[symbol].astype(np.uint32) * np.uint32(0xFF))
    packed = _OFFSETS[(low & np.uint32(0xFFF)).astype(np.intp)]
    packed |= _OFFSETS[((low >> np.uint32(12)) & np.uint32(0xFFF)).astype(np.intp)] << np.uint64(32)
    packed |= _DOWNS[down.astype(np.intp)]
    codes = work.codes[: n * carrier.GROUP]
    np.copyto(codes, packed.astype("<u8").view(np.uint8), casting="unsafe")
    if every > 1:  # only every `every`-th group of a block is active
        active = np.arange(carrier.BLOCK // carrier.GROUP) % every == 0
        codes.reshape(n, carrier.BLOCK // carrier.GROUP)[:, ~active] = IDLE
    delta = work.buffer(word, 0)[: n * carrier.BLOCK]
    np.take(PATTERNS[dtype], codes, axis=0, out=delta.reshape(-1, carrier.GROUP))
    lo = first - b0 * carrier.BLOCK
    delta = delta[lo : lo + count]
    # leave alone elements whose exponent is 0, max - 1 or max: one pass, two reductions, and
    # the per-element mask only in the rare chunk that has such an element
    exponent = work.buffer(word, 1)[:count]
    np.bitwise_and(raw, word(kind.exponent_mask), out=exponent)
    lowest, highest = kind.exponent_unit, kind.exponent_mask - 2 * kind.exponent_unit
    if count and (exponent.min() < lowest or exponent.max() > highest):
        delta[(exponent < lowest) | (exponent > highest)] = 0
    np.add(raw, delta, out=out)


def embed_q8_0(
    raw: U8,
    first_block: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: U8,
    density_log2: int,
) -> None:
    """Fingerprint whole Q8_0 blocks (34 bytes: f16 scale, 32 int8) starting at `first_block`."""
    found = _compiled_args(raw, out, bits)
    if found is None or raw.size % Q8_0_BYTES:
        embed_q8_0_reference(raw, first_block, tensor_seed, bits, out, density_log2)
        return
    compiled, codeword = found
    every = carrier.stride(density_log2)
    compiled.embed(KIND_CODES["Q8_0"], raw, out, first_block, tensor_seed, codeword, every)


def embed_q8_0_reference(
    raw: U8,
    first_block: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: U8,
    density_log2: int,
) -> None:
    """`embed_q8_0` in numpy: the definition of the output, and the fallback."""
    np.copyto(out, raw)
    n = raw.size // Q8_0_BYTES * Q8_0_BLOCK
    index, up = directions(tensor_seed, first_block * Q8_0_BLOCK, n, bits, density_log2)
    offset = index // Q8_0_BLOCK * Q8_0_BYTES + 2 + index % Q8_0_BLOCK
    quants = raw[offset].view(np.int8).astype(np.int16)
    quants += np.where(up, 1, -1).astype(np.int16)
    np.clip(quants, -127, 127, out=quants)
    out[offset] = quants.astype(np.int8).view(np.uint8)


def fingerprinted_units(
    dtype: str,
    data: U8,
    first_unit: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    density_log2: int,
    work: Workspace | None = None,
) -> bytes:
    """Fingerprinted whole units as a new bytes object (the compiled kernel writes it directly)."""
    size, _ = unit_bytes(dtype)
    units = data.size // size
    found = _compiled_args(data, data, bits)
    if found is not None and data.size == units * size:
        compiled, codeword = found
        every = carrier.stride(density_log2)
        return compiled.embed_bytes(
            KIND_CODES[dtype], data, first_unit, tensor_seed, codeword, every
        )
    # numpy: in slices of the workspace's capacity, so its temporaries stay that size
    work = work or Workspace(units)
    out = np.empty_like(data)
    step = max(1, work.capacity)
    for s in range(0, units, step):
        n = min(step, units - s)
        part = slice(s * size, (s + n) * size)
        embed_units(
            dtype, data[part], first_unit + s, tensor_seed, bits, out[part], density_log2, work
        )
    return out.tobytes()


def embed_units(
    dtype: str,
    data: U8,
    first_unit: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: U8,
    density_log2: int,
    work: Workspace | None = None,
) -> None:
    """Fingerprint whole units (elements, or Q8_0 blocks) of a tensor's raw bytes into `out`."""
    if dtype == "Q8_0":
        embed_q8_0(data, first_unit, tensor_seed, bits, out, density_log2)
        return
    kind = FLOAT_KINDS.get(dtype)
    if kind is None:
        unit_bytes(dtype)  # raises UnsupportedFormat
        return
    le = np.dtype(kind.word).newbyteorder("<")
    embed_float(
        data.view(le), dtype, first_unit, tensor_seed, bits, out.view(le), density_log2, work
    )

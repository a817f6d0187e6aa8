"""The embedding kernels: raw tensor bytes in, fingerprinted raw bytes out.

Why one format step, not "amplitude × std": a release is usually bf16, and 0.5% of a
matrix's std is below one bf16 ulp for most weights, so adding it in float and rounding back
either erases it or turns it into random rounding noise. Instead an active element moves by
exactly one step of a bf16 mantissa, towards larger or smaller magnitude as carrier × symbol
says: that is the same relative size (2^-8..2^-7 of |w|) and shape as the error a fp32 → bf16
cast makes, and at density 1/8 its energy (|w|²·2^-16/8) is of the cast's order
(|w|²·2^-16/12) while it stays exactly recoverable. F16 and F32 get the same relative step
(8 and 2^16 units of their raw words: one bf16 ulp of the value), so a bf16 cast of a
fingerprinted F32 copy keeps its mark. Q8_0 moves the int8 quant by one, the format's own
step (the quantised domain: re-encoding the block is not needed and the f16 scale is kept).

Working on the raw integer words keeps the kernel a few in-cache integer passes
(FIELD-NOTES: ~0.8x memcpy) and makes it deterministic on every machine. Elements whose
exponent is 0 (zero, subnormal) or one of the two largest (inf, NaN, ≥ 2^127) are left alone,
so no step can wrap into a NaN or flip a sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringfence.errors import UnsupportedFormat
from ringfence.fingerprint import carrier

U8 = npt.NDArray[np.uint8]


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
    tensor_seed: int, first: int, count: int, bits: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The changed elements among [first, first + count): (index from `first`, moves up).

    An element moves up (towards larger values, or larger magnitude for floats) when its
    carrier sign and its symbol's code bit agree: carrier × (2x - 1) = +1.
    """
    element, positive, symbol = carrier.carrier_positions(tensor_seed, first, count, bits.size)
    return element - first, positive == bits[symbol]


def embed_float(
    raw: npt.NDArray[np.unsignedinteger],
    dtype: str,
    first: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: npt.NDArray[np.unsignedinteger],
) -> None:
    """Fingerprint float elements [first, first + len(raw)) of a tensor into `out` (raw words)."""
    kind = FLOAT_KINDS[dtype]
    word = kind.word
    np.copyto(out, raw)
    index, up = directions(tensor_seed, first, raw.size, bits)
    values = raw[index]
    # E + 2 (mod 2^bits) ≤ 2 ⟺ E ∈ {0, max - 1, max}: leave those elements alone
    guard = (values + word(2 * kind.exponent_unit)) & word(kind.exponent_mask)
    safe = guard > 2 * kind.exponent_unit
    # +step or -step (two's complement) where safe, 0 elsewhere
    down = word((1 << (8 * kind.itemsize)) - kind.step)  # -step, two's complement
    step = np.where(up, word(kind.step), down)
    step *= safe
    values += step
    out[index] = values


def embed_q8_0(
    raw: U8, first_block: int, tensor_seed: int, bits: npt.NDArray[np.bool_], out: U8
) -> None:
    """Fingerprint whole Q8_0 blocks (34 bytes: f16 scale, 32 int8) starting at `first_block`."""
    np.copyto(out, raw)
    n = raw.size // Q8_0_BYTES * Q8_0_BLOCK
    index, up = directions(tensor_seed, first_block * Q8_0_BLOCK, n, bits)
    offset = index // Q8_0_BLOCK * Q8_0_BYTES + 2 + index % Q8_0_BLOCK
    quants = raw[offset].view(np.int8).astype(np.int16)
    quants += np.where(up, 1, -1).astype(np.int16)
    np.clip(quants, -127, 127, out=quants)
    out[offset] = quants.astype(np.int8).view(np.uint8)


def embed_units(
    dtype: str,
    data: U8,
    first_unit: int,
    tensor_seed: int,
    bits: npt.NDArray[np.bool_],
    out: U8,
) -> None:
    """Fingerprint whole units (elements, or Q8_0 blocks) of a tensor's raw bytes into `out`."""
    if dtype == "Q8_0":
        embed_q8_0(data, first_unit, tensor_seed, bits, out)
        return
    kind = FLOAT_KINDS.get(dtype)
    if kind is None:
        unit_bytes(dtype)  # raises UnsupportedFormat
        return
    le = np.dtype(kind.word).newbyteorder("<")
    embed_float(data.view(le), dtype, first_unit, tensor_seed, bits, out.view(le))

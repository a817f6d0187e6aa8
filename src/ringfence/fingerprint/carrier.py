"""Keyed, position-addressed pseudo-random streams: the carrier and the code derive from these.

Every random quantity in a fingerprint is a pure function of (key, label, counter), so any
byte range of a fingerprinted file can be computed without the bytes before it. The stream
is splitmix64 (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number generators",
with Stafford's "Mix13" finaliser): output n of the stream seeded with `s` is
`mix(s + (n + 1) * 0x9E3779B97F4A7C15)`. It is a counter-based generator, vectorised here over
numpy uint64 arrays; the seeds are secret (HMAC-SHA256 of the release key and a label), and
the expansion is fixed forever in this module so that a recipient's bytes never change with a
numpy upgrade.

Carrier layout: the elements of a tensor are grouped in blocks of `BLOCK` (64) consecutive
elements, and each block in 8 groups of `GROUP` (8) elements. Block `b` of a tensor uses
output `b` of the tensor's stream, one 64-bit word `h`:

- bits 0..23:  for group g, bits 3g..3g+2 pick the one element of the group that is changed
               (exactly one weight in eight, stratified so no stretch of weights is skipped);
- bits 24..31: for group g, bit 24+g is that element's carrier sign (+1 when set);
- bits 32..63: the code symbol the block carries (Lemire's multiply-shift onto [0, m)).

Contiguous blocks scattered at random over every carrying tensor spread each symbol over
thousands of weights in many layers, while the per-element work stays one hash per 64
elements and one scatter per 8: the kernel copies the bytes and touches an eighth of them.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]

BLOCK = 64
GROUP = 8
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


def seed(key: bytes, label: str) -> int:
    """A 64-bit secret seed: the first 8 bytes of HMAC-SHA256(key, label), little-endian."""
    return int.from_bytes(hmac.new(key, label.encode(), hashlib.sha256).digest()[:8], "little")


def mix(z: U64) -> U64:
    """Stafford's Mix13 finaliser of splitmix64, in place on a uint64 array; returns it."""
    t = np.empty_like(z)
    np.right_shift(z, np.uint64(30), out=t)
    z ^= t
    z *= _C1
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= _C2
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    return z


def stream(seed_value: int, start: int, count: int) -> U64:
    """Outputs `start .. start+count-1` of the splitmix64 stream seeded with `seed_value`."""
    z = np.arange(start + 1, start + 1 + count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z *= GOLDEN
        z += np.uint64(seed_value)
        return mix(z)


def streams(seeds: U64, start: int, count: int) -> U64:
    """Outputs `start .. start+count-1` of many streams at once: shape (len(seeds), count)."""
    z = np.arange(start + 1, start + 1 + count, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        z = z * GOLDEN + seeds.astype(np.uint64)[:, None]
        return mix(z)


_SHIFTS = (np.arange(BLOCK // GROUP, dtype=np.uint32) * 3)[None, :]
_SIGN_SHIFTS = (np.arange(BLOCK // GROUP, dtype=np.uint32) + 24)[None, :]
_GROUP_BASE = (np.arange(BLOCK // GROUP, dtype=np.int64) * GROUP)[None, :]


def carrier_positions(
    tensor_seed: int, first: int, count: int, code_length: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
    """The changed elements among [first, first + count) of a tensor.

    Returns (element index, carrier sign is +1, code symbol), ascending by element index.
    """
    b0 = first // BLOCK
    b1 = -(-(first + count) // BLOCK)
    n = b1 - b0
    words = stream(tensor_seed, b0, n)
    low = (words & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None]
    bits = np.empty((n, BLOCK // GROUP), dtype=np.uint32)
    np.right_shift(low, _SHIFTS, out=bits)
    bits &= np.uint32(GROUP - 1)
    element = np.empty((n, BLOCK // GROUP), dtype=np.int64)
    np.add(
        np.arange(b0 * BLOCK, b1 * BLOCK, BLOCK, dtype=np.int64)[:, None], _GROUP_BASE, out=element
    )
    element += bits
    np.right_shift(low, _SIGN_SHIFTS, out=bits)
    bits &= np.uint32(1)
    positive = bits.astype(bool).ravel()
    symbol = ((words >> np.uint64(32)) * np.uint64(code_length)) >> np.uint64(32)
    symbols = np.repeat(symbol.astype(np.intp), BLOCK // GROUP)
    flat = element.ravel()
    if b0 * BLOCK == first and b1 * BLOCK == first + count:
        return flat, positive, symbols
    keep = (flat >= first) & (flat < first + count)
    return flat[keep], positive[keep], symbols[keep]


def _spread_table() -> U64:
    # sign byte -> a 64-bit mask with all 8 bits of group g set where bit g of the byte is
    v = np.arange(256, dtype=np.uint64)
    out = np.zeros(256, dtype=np.uint64)
    for g in range(BLOCK // GROUP):
        out |= ((v >> np.uint64(g)) & np.uint64(1)) * np.uint64(0xFF << (GROUP * g))
    return out


def _active_table() -> U64:
    # 12 bits (4 groups x 3 bits) -> the 32-bit mask of the 4 changed elements they pick
    v = np.arange(4096, dtype=np.uint64)
    out = np.zeros(4096, dtype=np.uint64)
    for g in range(4):
        offset = ((v >> np.uint64(3 * g)) & np.uint64(GROUP - 1)) + np.uint64(GROUP * g)
        out |= np.left_shift(np.uint64(1), offset)
    return out


_SPREAD = _spread_table()
_ACTIVE = _active_table()


def carrier_masks(
    tensor_seed: int, first_block: int, n_blocks: int, code_length: int
) -> tuple[U64, U64, npt.NDArray[np.intp]]:
    """The same carrier as `carrier_positions`, as 64-bit masks per block.

    Returns (active, positive, symbol): bit j of `active[b]` is set when element 64b + j is
    changed, bit j of `positive[b]` when its carrier is +1 (only meaningful where active).
    """
    words = stream(tensor_seed, first_block, n_blocks)
    low = (words & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    active = _ACTIVE[(low & np.uint32(0xFFF)).astype(np.intp)]
    active |= _ACTIVE[((low >> np.uint32(12)) & np.uint32(0xFFF)).astype(np.intp)] << np.uint64(32)
    positive = _SPREAD[(low >> np.uint32(24)).astype(np.intp)]
    symbol = ((words >> np.uint64(32)) * np.uint64(code_length)) >> np.uint64(32)
    return active, positive, symbol.astype(np.intp)


def unpack_bits(words: U64) -> npt.NDArray[np.uint8]:
    """One uint8 (0/1) per bit, bit j of word b at position 64b + j."""
    return np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little")

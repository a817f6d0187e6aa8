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
               (one weight in eight, stratified so no stretch of weights is skipped);
- bits 24..31: for group g, bit 24+g is that element's carrier sign (+1 when set);
- bits 32..63: the code symbol the block carries (Lemire's multiply-shift onto [0, m)).

A release's density 2^-d (d = `density_log2`, stored with the release) keeps every
`stride(d)`-th group of a block active: d = 3 changes a weight in every group (1/8), d = 4
only in groups 0, 2, 4, 6 (1/16). The word is the same; a sparser density just uses less of it.

Contiguous blocks scattered at random over every carrying tensor spread each symbol over
thousands of weights in many layers, while the per-element work stays one hash per 64
elements and one scatter per active group: the kernel copies the bytes and touches 1/2^d.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]

BLOCK = 64
GROUP = 8
#: the densities a carrier can have: one changed element in 2^d, d in 3..6
DENSITIES = range(3, 7)
#: the density of new releases (1/16: below a bf16 cast's energy, see `fingerprint.embed`)
DENSITY_LOG2 = 4
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


def stride(density_log2: int) -> int:
    """Every how many groups of a block one is active at density 2^-density_log2."""
    if density_log2 not in DENSITIES:
        raise ValueError(f"density 2^-{density_log2} is not one of 2^-3 .. 2^-6")
    return 1 << (density_log2 - 3)


_SHIFTS = (np.arange(BLOCK // GROUP, dtype=np.uint32) * 3)[None, :]
_SIGN_SHIFTS = (np.arange(BLOCK // GROUP, dtype=np.uint32) + 24)[None, :]
_GROUP_BASE = (np.arange(BLOCK // GROUP, dtype=np.int64) * GROUP)[None, :]


def carrier_positions(
    tensor_seed: int, first: int, count: int, code_length: int, density_log2: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
    """The changed elements among [first, first + count) of a tensor at a density.

    Returns (element index, carrier sign is +1, code symbol), ascending by element index.
    """
    every = stride(density_log2)
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
    if every > 1:
        element, bits = element[:, ::every], bits[:, ::every]
    positive = bits.astype(bool).ravel()
    symbol = ((words >> np.uint64(32)) * np.uint64(code_length)) >> np.uint64(32)
    symbols = np.repeat(symbol.astype(np.intp), BLOCK // GROUP // every)
    flat = element.ravel()
    if b0 * BLOCK == first and b1 * BLOCK == first + count:
        return flat, positive, symbols
    keep = (flat >= first) & (flat < first + count)
    return flat[keep], positive[keep], symbols[keep]

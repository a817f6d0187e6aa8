"""The compiled fingerprint kernel (_kernel.c); embed.py holds the numpy reference."""

from typing import Any

import numpy as np

# contiguous memory the C code reads (or writes) through the buffer protocol; on Python 3.11
# numpy's arrays do not match collections.abc.Buffer for type checkers, hence the union
Buffer = bytes | bytearray | memoryview | np.ndarray[Any, Any]

BF16: int
F16: int
F32: int
Q8_0: int

def embed(
    kind: int, src: Buffer, out: Buffer, first: int, seed: int, bits: Buffer, stride: int = 1, /
) -> None:
    """Fingerprint units [first, first + n) from `src` into `out` (may be the same buffer)."""

def embed_bytes(
    kind: int, src: Buffer, first: int, seed: int, bits: Buffer, stride: int = 1, /
) -> bytes:
    """Like `embed`, into a new bytes object."""

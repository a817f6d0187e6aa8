"""Fingerprinted bytes of one weights file, for any byte range, in constant memory.

A range is split at tensor boundaries: header bytes and tensors that carry no code pass
through untouched; a carrying tensor is widened to whole units (elements, or 34-byte Q8_0
blocks), fingerprinted in slices of `SLICE` units and cut back to the asked range, so any
range equals the same slice of the whole file (HTTP Range, parallel and resumed downloads).
Memory is a `CHUNK` read buffer and the chunk in flight (plus, with the numpy fallback, the
kernel's per-slice temporaries), whatever the file size.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ringfence.fingerprint.embed import Workspace, fingerprinted_units, unit_bytes
from ringfence.fingerprint.plan import CarrierTensor, FingerprintPlan

CHUNK = 16 * 1024 * 1024
SLICE = 1 << 19  # units per numpy kernel call: amortises its overhead; per-block arrays < 128 KiB


def _read_exact(fh: BinaryIO, offset: int, view: memoryview) -> None:
    fh.seek(offset)
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError(f"weights file ends at {offset + got}, expected {offset + len(view)}")
        got += n


def _passthrough(fh: BinaryIO, start: int, end: int, chunk: int) -> Iterator[bytes]:
    fh.seek(start)
    while start < end:
        n = min(chunk, end - start)
        data = fh.read(n)  # straight into a new bytes object: one copy, like a plain read
        while len(data) < n:  # an unbuffered file may return less
            more = fh.read(n - len(data))
            if not more:
                raise EOFError(f"weights file ends at {start + len(data)}, expected {start + n}")
            data += more
        yield data
        start += n


def _tensor_range(
    fh: BinaryIO,
    tensor: CarrierTensor,
    density_log2: int,
    bits: npt.NDArray[np.bool_],
    start: int,
    end: int,
    buf: bytearray,
    work: Workspace,
) -> Iterator[bytes]:
    size, _ = unit_bytes(tensor.dtype)
    units_per_chunk = max(1, len(buf) // size)
    first = (start - tensor.begin) // size
    last = -(-(end - tensor.begin) // size)
    unit = first
    while unit < last:
        count = min(units_per_chunk, last - unit)
        offset = tensor.begin + unit * size
        _read_exact(fh, offset, memoryview(buf)[: count * size])
        src = np.frombuffer(buf, dtype=np.uint8, count=count * size)
        # the kernel writes the chunk that is sent: no copy after it but at a range's cut ends
        marked = fingerprinted_units(tensor.dtype, src, unit, tensor.seed, bits, density_log2, work)
        lo = max(start, offset) - offset
        hi = min(end, offset + count * size) - offset
        yield marked if lo == 0 and hi == len(marked) else marked[lo:hi]
        unit += count


def fingerprinted_bytes(
    source: BinaryIO | Path,
    plan: FingerprintPlan,
    bits: npt.NDArray[np.bool_],
    start: int = 0,
    end: int | None = None,
    chunk: int = CHUNK,
) -> Iterator[bytes]:
    """Yield bytes [start, end) of the file as the recipient with codeword `bits` gets them."""
    if isinstance(source, Path):
        with source.open("rb") as fh:
            yield from fingerprinted_bytes(fh, plan, bits, start, end, chunk)
        return
    if end is None:
        source.seek(0, 2)
        end = source.tell()
    if bits.size != plan.code_length:
        raise ValueError(f"codeword has {bits.size} symbols, the plan {plan.code_length}")
    # at least one unit of every type (a Q8_0 block is 34 bytes), at most what the range needs
    chunk = max(64, min(chunk, end - start + 128))
    buf = bytearray(chunk)
    work = Workspace(SLICE)
    tensors = sorted(plan.tensors, key=lambda t: t.begin)
    begins = [t.begin for t in tensors]
    pos = start
    i = max(0, bisect.bisect_right(begins, pos) - 1)
    while pos < end:
        while i < len(tensors) and tensors[i].end <= pos:
            i += 1
        if i < len(tensors) and tensors[i].begin <= pos:
            stop = min(end, tensors[i].end)
            yield from _tensor_range(
                source, tensors[i], plan.density_log2, bits, pos, stop, buf, work
            )
        else:
            stop = min(end, tensors[i].begin) if i < len(tensors) else end
            yield from _passthrough(source, pos, stop, chunk)
        pos = stop

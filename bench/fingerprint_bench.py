"""Fingerprint kernel and streaming: kernel vs memcpy on 1 GB of bf16, fingerprinted read of the
demo model vs a plain read, peak RSS on a 4 GB file, and the cost of its last 1 MiB range."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import best_of, ratio_row

TITLE = "Fingerprint: embedding kernel and streaming"
SECTION = "fingerprint"
KEY = b"bench-release-key".ljust(32, b"\0")


def _realistic_bf16(count: int, seed: int = 0) -> np.ndarray:
    """bf16 words of normal weights (std 0.02): random bytes would be NaNs and denormals."""
    rng = np.random.default_rng(seed)
    block = (rng.normal(0, 0.02, 1 << 24).astype(np.float32).view(np.uint32) >> 16).astype(
        np.uint16
    )
    return np.resize(block, count)


def _kernel_vs_memcpy() -> list[dict[str, Any]]:
    from ringfence.fingerprint import code
    from ringfence.fingerprint.embed import (
        COMPILED,
        Workspace,
        embed_float,
        embed_float_reference,
    )
    from ringfence.fingerprint.stream import SLICE

    n = 1 << 29  # 1 GiB of bf16
    src = _realistic_bf16(n)
    dst = np.empty_like(src)
    dst[:] = 0  # touch the pages before timing
    limits = code.thresholds(KEY, code.CodeParams().design.length, code.CodeParams().cutoff)
    bits = code.codeword(KEY, 12345, limits)
    d = code.CodeParams().density_log2  # new releases' density
    chunk = 8 << 20  # 16 MB of bf16

    def memcpy() -> None:
        for i in range(0, n, chunk):
            np.copyto(dst[i : i + chunk], src[i : i + chunk])

    work = Workspace(SLICE)

    def kernel() -> None:
        for i in range(0, n, SLICE):
            embed_float(src[i : i + SLICE], "BF16", i, 0x5EED, bits, dst[i : i + SLICE], d, work)

    def reference() -> None:
        for i in range(0, n, SLICE):
            embed_float_reference(
                src[i : i + SLICE], "BF16", i, 0x5EED, bits, dst[i : i + SLICE], d, work
            )

    base = best_of(memcpy, 3)
    spent = best_of(kernel, 3)
    numpy_spent = best_of(reference, 3)
    which = "compiled (_kernel.c)" if COMPILED is not None else "numpy (no compiled kernel)"
    return [
        ratio_row(
            SECTION,
            "fingerprint kernel, 1 GiB bf16 (throughput)",
            1 / spent,
            "GiB/s",
            "numpy memcpy, 16 MB chunks",
            1 / base,
            higher_is_better=True,
            goal=0.3,
            note=f"{which}: {spent:.2f} s, memcpy {base:.2f} s; normal weights, std 0.02",
        ),
        ratio_row(
            SECTION,
            "numpy reference kernel, 1 GiB bf16 (throughput)",
            1 / numpy_spent,
            "GiB/s",
            "numpy memcpy, 16 MB chunks",
            1 / base,
            higher_is_better=True,
            note=f"the fallback and the definition of the output: {numpy_spent:.2f} s",
        ),
    ]


def _read_demo() -> dict[str, Any]:
    from ringfence.demo import demo_hf_dir
    from ringfence.fingerprint import code, plan, stream
    from ringfence.formats.index import read_index

    path = demo_hf_dir() / "model.safetensors"
    p = plan.build_plan(read_index(path), KEY)
    bits = code.codeword(KEY, 7, code.thresholds(KEY, p.code_length, code.CodeParams().cutoff))
    size = path.stat().st_size

    def plain() -> None:
        with path.open("rb") as fh:
            buf = bytearray(stream.CHUNK)
            while n := fh.readinto(buf):
                bytes(memoryview(buf)[:n])

    def marked() -> None:
        for _ in stream.fingerprinted_bytes(path, p, bits):
            pass

    plain()  # page cache
    base = best_of(plain, 3)
    spent = best_of(marked, 3)
    return ratio_row(
        SECTION,
        "fingerprinted read of the demo model (throughput)",
        size / spent / 2**20,
        "MiB/s",
        "plain chunked read of the same file",
        size / base / 2**20,
        higher_is_better=True,
        goal=0.8,
        note=f"{size / 2**20:.0f} MiB from the page cache; {len(p.tensors)} carrier tensors",
    )


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ringfence.fingerprint import code, plan, stream
    from ringfence.formats.index import read_index
    path, mode = Path(sys.argv[1]), sys.argv[2]
    key = b"bench-release-key".ljust(32, b"\\0")
    started = time.perf_counter()
    if mode == "plain":
        with path.open("rb") as fh:
            buf = bytearray(stream.CHUNK)
            while n := fh.readinto(buf):
                bytes(memoryview(buf)[:n])
    else:
        p = plan.build_plan(read_index(path), key)
        limits = code.thresholds(key, p.code_length, code.CodeParams().cutoff)
        bits = code.codeword(key, 3, limits)
        size = path.stat().st_size
        if mode == "whole":
            for _ in stream.fingerprinted_bytes(path, p, bits):
                pass
        else:
            start = 0 if mode == "first" else size - (1 << 20)
            for _ in range(20):
                for _ in stream.fingerprinted_bytes(path, p, bits, start, start + (1 << 20)):
                    pass
    spent = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print(hwm, spent)
    """
)


def _child(path: Path, mode: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]) / 1024, float(out[1])


def _big_file(directory: Path) -> Path:
    """A 4 GiB bf16 safetensors file of 256 matrices (4096 x 2048), written in 16 MB pieces."""
    shape = (4096, 2048)
    count = 256
    header: dict[str, Any] = {}
    offset = 0
    nbytes = shape[0] * shape[1] * 2
    for i in range(count):
        header[f"model.layers.{i}.mlp.up_proj.weight"] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path = directory / "big.safetensors"
    block = _realistic_bf16(nbytes // 2).tobytes()
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(encoded)))
        fh.write(encoded)
        for _ in range(count):
            fh.write(block)
    return path


def run() -> list[dict[str, Any]]:
    """Every fingerprint figure of one run."""
    rows = [*_kernel_vs_memcpy(), _read_demo()]
    with tempfile.TemporaryDirectory(prefix="ringfence-fp-bench-", dir="/tmp") as tmp:
        path = _big_file(Path(tmp))
        plain_rss, plain_time = _child(path, "plain")
        rss, spent = _child(path, "whole")
        rows.append(
            ratio_row(
                SECTION,
                "peak RSS fingerprinting a 4 GiB bf16 file",
                rss,
                "MiB",
                "the 256 MiB budget",
                256.0,
                higher_is_better=False,
                goal=1.0,
                note=f"plain read peaks at {plain_rss:.0f} MiB; fingerprinting took {spent:.1f} s "
                f"vs {plain_time:.1f} s plain",
            )
        )
        _, first = _child(path, "first")
        _, last = _child(path, "last")
        rows.append(
            ratio_row(
                SECTION,
                "last 1 MiB range of a 4 GiB file (20 reads)",
                last,
                "s",
                "first 1 MiB range (20 reads)",
                first,
                higher_is_better=False,
                goal=1.5,
                note="O(range): no byte before the range is read or computed",
            )
        )
    return rows


if __name__ == "__main__":
    started = time.perf_counter()
    for row in run():
        print(row)
    print(f"{time.perf_counter() - started:.0f} s")

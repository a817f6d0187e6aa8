"""The compiled kernel (_kernel.c) equals the numpy reference byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.fingerprint import carrier, code, embed, plan, stream
from ringfence.formats.index import read_index
from ringfence.formats.safetensors import bf16_words, write_safetensors

pytestmark = pytest.mark.skipif(embed.COMPILED is None, reason="the C kernel is not built")

KEY = b"kernel-key".ljust(32, b"\0")
PARAMS = code.CodeParams(max_recipients=1000, max_colluders=2, false_accusation=1e-6)
WORDS = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32}


def _weights(dtype: str, count: int, seed: int) -> np.ndarray:
    """Raw words of normal weights (std 0.02) salted with the values the guard leaves alone."""
    rng = np.random.default_rng(seed)
    f32 = (rng.standard_normal(count) * 0.02).astype(np.float32)
    special = np.array(
        [0.0, -0.0, 1e-40, -1e-42, np.inf, -np.inf, np.nan, 3e38, -3e38, 2.0**127, 6e4, 1e-7],
        dtype=np.float32,
    )
    where = rng.random(count) < 0.05
    f32[where] = rng.choice(special, int(where.sum()))
    if dtype == "BF16":
        words = bf16_words(f32)
    elif dtype == "F16":
        with np.errstate(over="ignore"):
            words = f32.astype(np.float16).view(np.uint16)
    else:
        words = f32.view(np.uint32)
    # and some raw words at the exponent boundaries (the guard's edges, max exponent - 1)
    edges = rng.integers(0, np.iinfo(WORDS[dtype]).max, count, dtype=WORDS[dtype], endpoint=True)
    raw_where = rng.random(count) < 0.05
    words = words.copy()
    words[raw_where] = edges[raw_where]
    return words


@settings(max_examples=150, deadline=None)
@given(
    dtype=st.sampled_from(sorted(WORDS)),
    count=st.integers(0, 3000),
    first=st.one_of(st.integers(0, 5000), st.integers(0, 2**40)),
    tensor_seed=st.integers(0, 2**64 - 1),
    code_length=st.integers(1, 5000),
    data_seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from(carrier.DENSITIES),
)
def test_float_kernel_equals_numpy(
    dtype: str,
    count: int,
    first: int,
    tensor_seed: int,
    code_length: int,
    data_seed: int,
    density: int,
) -> None:
    raw = _weights(dtype, count, data_seed)
    bits = np.random.default_rng(data_seed + 1).random(code_length) < 0.5
    compiled, reference = np.empty_like(raw), np.empty_like(raw)
    embed.embed_float(raw, dtype, first, tensor_seed, bits, compiled, density)
    embed.embed_float_reference(raw, dtype, first, tensor_seed, bits, reference, density)
    assert compiled.tobytes() == reference.tobytes()


@settings(max_examples=80, deadline=None)
@given(
    blocks=st.integers(0, 200),
    first_block=st.one_of(st.integers(0, 100), st.integers(0, 2**34)),
    tensor_seed=st.integers(0, 2**64 - 1),
    code_length=st.integers(1, 3000),
    data_seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from(carrier.DENSITIES),
)
def test_q8_0_kernel_equals_numpy(
    blocks: int, first_block: int, tensor_seed: int, code_length: int, data_seed: int, density: int
) -> None:
    rng = np.random.default_rng(data_seed)
    raw = rng.integers(0, 256, blocks * embed.Q8_0_BYTES, dtype=np.uint8)
    raw[rng.random(raw.size) < 0.2] = 0x80  # -128 and 127: the clipped ends
    raw[rng.random(raw.size) < 0.1] = 0x7F
    bits = rng.random(code_length) < 0.5
    compiled, reference = np.empty_like(raw), np.empty_like(raw)
    embed.embed_q8_0(raw, first_block, tensor_seed, bits, compiled, density)
    embed.embed_q8_0_reference(raw, first_block, tensor_seed, bits, reference, density)
    assert compiled.tobytes() == reference.tobytes()


def test_in_place_and_bytes_entry_points() -> None:
    raw = _weights("BF16", 10_000, 3)
    bits = np.random.default_rng(4).random(777) < 0.5
    reference = np.empty_like(raw)
    embed.embed_float_reference(raw, "BF16", 13, 99, bits, reference, 4)
    in_place = raw.copy()
    embed.embed_float(in_place, "BF16", 13, 99, bits, in_place, 4)
    assert in_place.tobytes() == reference.tobytes()
    assert embed.COMPILED is not None
    codeword = bits.view(np.uint8)
    assert embed.COMPILED.embed_bytes(0, raw, 13, 99, codeword, 2) == reference.tobytes()


def test_kernel_refuses_bad_arguments() -> None:
    assert embed.COMPILED is not None
    k = embed.COMPILED
    bits = np.ones(8, dtype=np.uint8)
    with pytest.raises(ValueError):
        k.embed(k.F32, b"\0" * 6, bytearray(6), 0, 1, bits)  # not whole words
    with pytest.raises(ValueError):
        k.embed(k.BF16, b"\0" * 4, bytearray(6), 0, 1, bits)  # sizes differ
    with pytest.raises(ValueError):
        k.embed(k.BF16, b"\0" * 4, bytearray(4), 0, 1, b"")  # empty codeword
    with pytest.raises(ValueError):
        k.embed(7, b"\0" * 4, bytearray(4), 0, 1, bits)
    with pytest.raises(TypeError):
        k.embed(k.BF16, b"\0" * 4, b"\0" * 4, 0, 1, bits)  # read-only out
    with pytest.raises(ValueError, match="stride"):
        k.embed(k.BF16, b"\0" * 4, bytearray(4), 0, 1, bits, 3)


def test_block_and_group_constants_match_the_c_source() -> None:
    source = (Path(embed.__file__).parent / "_kernel.c").read_text()
    assert f"#define BLOCK {carrier.BLOCK}\n" in source
    assert f"#define GROUP {carrier.GROUP}\n" in source
    assert f"#define Q8_0_BYTES {embed.Q8_0_BYTES}\n" in source


def test_stream_with_the_numpy_fallback_equals_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "model.safetensors"
    write_safetensors(
        path,
        {
            "a.weight": bf16_words((rng.standard_normal((300, 257)) * 0.02).astype(np.float32)),
            "b.weight": (rng.standard_normal((260, 301)) * 0.02).astype(np.float16),
            "c.weight": (rng.standard_normal((256, 300)) * 0.02).astype(np.float32),
        },
        dtypes={"a.weight": "BF16"},
    )
    p = plan.build_plan(read_index(path), KEY, PARAMS)
    bits = np.random.default_rng(6).random(p.code_length) < 0.5
    assert {t.dtype for t in p.tensors} == {"BF16", "F16", "F32"}
    size = path.stat().st_size
    ranges = [(0, size), (7, size - 3), (size // 3, size // 2 + 1)]
    compiled = [b"".join(stream.fingerprinted_bytes(path, p, bits, a, b, 4096)) for a, b in ranges]
    monkeypatch.setattr(embed, "COMPILED", None)
    fallback = [b"".join(stream.fingerprinted_bytes(path, p, bits, a, b, 4096)) for a, b in ranges]
    assert compiled == fallback
    assert compiled[0] != path.read_bytes()

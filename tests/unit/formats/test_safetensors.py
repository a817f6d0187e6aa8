"""The strict safetensors reader: valid files read back exactly, mutants fail cleanly."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from ringfence.errors import MalformedFile
from ringfence.formats import safetensors as st_format
from ringfence.formats.index import WeightsIndex


def _library_offsets(path: Path) -> dict[str, tuple[str, list[int], int, int]]:
    """dtype, shape and absolute offsets as the safetensors library's own header says."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    return {
        name: (
            e["dtype"],
            e["shape"],
            8 + length + e["data_offsets"][0],
            8 + length + e["data_offsets"][1],
        )
        for name, e in header.items()
    }


def _assert_matches_library(path: Path, found: WeightsIndex) -> None:
    expected = _library_offsets(path)
    assert {t.name: (t.dtype, list(t.shape), t.begin, t.end) for t in found.tensors} == expected
    with safe_open(str(path), framework="np") as handle:
        assert set(handle.keys()) == {t.name for t in found.tensors}


def test_library_written_f32_f16_file_reads_with_its_offsets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "model.safetensors"
    tensors = {
        "b.weight": rng.normal(size=(3, 5)).astype(np.float32),
        "a.bias": rng.normal(size=7).astype(np.float16),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    save_file(tensors, str(path), metadata={"format": "pt"})
    found = st_format.read_index(path)
    _assert_matches_library(path, found)
    assert found.metadata == {"format": "pt"}
    assert found.file_size == path.stat().st_size
    raw = path.read_bytes()
    for info in found.tensors:
        data = np.frombuffer(raw[info.begin : info.end], dtype=tensors[info.name].dtype)
        assert np.array_equal(data.reshape(info.shape), tensors[info.name])


def test_our_bf16_file_reads_back_through_the_library(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    values = np.random.default_rng(1).normal(0, 0.02, (4, 6)).astype(np.float32)
    path = tmp_path / "bf16.safetensors"
    st_format.write_safetensors(
        path,
        {"w": st_format.bf16_words(values), "n": np.ones(3, dtype=np.float32)},
        {"format": "pt"},
        dtypes={"w": "BF16"},
    )
    found = st_format.read_index(path)
    _assert_matches_library(path, found)
    assert found.by_name()["w"].dtype == "BF16"
    loaded = load_file(str(path))
    assert loaded["w"].dtype == torch.bfloat16
    expected = torch.from_numpy(values).to(torch.bfloat16)  # torch rounds to nearest even too
    assert torch.equal(loaded["w"], expected)


@pytest.mark.parametrize(
    ("value", "word"),
    [
        (1.0, 0x3F80),
        (-2.0, 0xC000),
        (float.fromhex("0x1.0101p0"), 0x3F81),  # above the halfway point: rounds up
        (float.fromhex("0x1.01p0"), 0x3F80),  # exactly halfway, even below: stays
        (float.fromhex("0x1.03p0"), 0x3F82),  # exactly halfway, odd below: rounds to even
        (float("inf"), 0x7F80),
        (3.4e38, 0x7F80),  # past bf16's largest finite value: overflows to inf
    ],
)
def test_bf16_rounds_to_nearest_even(value: float, word: int) -> None:
    assert int(st_format.bf16_words(np.array([value], dtype=np.float32))[0]) == word


def test_bf16_keeps_nan_a_nan() -> None:
    words = st_format.bf16_words(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.isnan(st_format.bf16_to_f32(words)).all()


def test_writer_refuses_a_dtype_of_the_wrong_width(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot store"):
        st_format.write_safetensors(
            tmp_path / "x.safetensors", {"w": np.zeros(2, np.float32)}, dtypes={"w": "BF16"}
        )


def test_header_limit_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", st_format.MAX_HEADER_BYTES + 1) + b"{}")
    with pytest.raises(MalformedFile, match="exceeds"):
        st_format.read_index(path)


def _valid_file() -> bytes:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
        "c": {"dtype": "U8", "shape": [2], "data_offsets": [22, 24]},
    }
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + bytes(range(24))


def _check_consistent(found: WeightsIndex, size: int) -> None:
    """What a successful read promises: tensors tile the data section exactly."""
    cursor = found.data_offset
    for info in sorted(found.tensors, key=lambda t: t.begin):
        assert info.begin == cursor
        assert info.nbytes * 8 == info.numel * st_format.DTYPE_BITS[info.dtype]
        cursor = info.end
    assert cursor == size == found.file_size


_BASE = _valid_file()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), min_size=1, max_size=4
    ),
    cut=st.one_of(st.none(), st.integers(0, len(_BASE))),
    tail=st.binary(max_size=8),
)
def test_mutated_bytes_read_consistently_or_fail_cleanly(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    raw = bytearray(_BASE)
    for position, value in edits:
        raw[position] = value
    raw = raw[:cut] + tail if cut is not None else raw + tail
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(bytes(raw))
    try:
        found = st_format.read_index(path)
    except MalformedFile as exc:
        assert "\n" not in exc.diagnostics()
        return
    _check_consistent(found, len(raw))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tensor=st.sampled_from(["a", "b", "c", "__metadata__"]),
    key=st.sampled_from(["dtype", "shape", "data_offsets", "extra", "format"]),
    value=_json_values,
    data_len=st.integers(0, 40),
)
def test_mutated_headers_read_consistently_or_fail_cleanly(
    tmp_path: Path, tensor: str, key: str, value: object, data_len: int
) -> None:
    (length,) = struct.unpack("<Q", _BASE[:8])
    header = json.loads(_BASE[8 : 8 + length])
    header[tensor][key] = value
    encoded = json.dumps(header).encode()
    raw = struct.pack("<Q", len(encoded)) + encoded + bytes(data_len)
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(raw)
    try:
        found = st_format.read_index(path)
    except MalformedFile as exc:
        assert "\n" not in exc.diagnostics()
        return
    _check_consistent(found, len(raw))

"""The GGUF reader: real writer output reads with the library's offsets; mutations fail cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.errors import MalformedFile, UnsupportedFormat
from ringfence.formats import gguf as gguf_format
from ringfence.formats.index import WeightsIndex
from tests.unit.formats.hostile import make_hostile


def _write_gguf(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """A GGUF made by gguf-py's own writer; returns name -> (type, numpy shape)."""
    rng = np.random.default_rng(0)
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_token_list([f"tok{i}" for i in range(100)])
    expected: dict[str, tuple[str, tuple[int, ...]]] = {}
    writer.add_tensor("norm.weight", rng.normal(size=64).astype(np.float32))
    expected["norm.weight"] = ("F32", (64,))
    writer.add_tensor("half.weight", rng.normal(size=(3, 32)).astype(np.float16))
    expected["half.weight"] = ("F16", (3, 32))
    for qtype, shape in (
        (GGMLQuantizationType.Q8_0, (4, 64)),
        (GGMLQuantizationType.Q4_1, (2, 96)),
    ):
        blocks = quantize(rng.normal(size=shape).astype(np.float32), qtype)
        writer.add_tensor(f"{qtype.name}.weight", blocks, raw_dtype=qtype)
        expected[f"{qtype.name}.weight"] = (qtype.name, shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def test_writer_output_reads_with_the_library_offsets(tmp_path: Path) -> None:
    path = tmp_path / "small.gguf"
    expected = _write_gguf(path)
    found = gguf_format.read_index(path)
    assert {t.name: (t.dtype, t.shape) for t in found.tensors} == expected
    reader = GGUFReader(path)
    assert found.data_offset == reader.data_offset
    for info, tensor in zip(found.tensors, reader.tensors, strict=True):
        assert (info.begin, info.nbytes) == (tensor.data_offset, tensor.n_bytes)
    assert found.metadata["general.architecture"] == "llama"
    assert found.metadata["llama.rope.freq_base"] == 10000.0
    assert "tokenizer.ggml.tokens" not in found.metadata  # long arrays stay out


def test_big_endian_files_are_unsupported_not_malformed(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "big") + bytes(16))
    with pytest.raises(UnsupportedFormat, match="big-endian"):
        gguf_format.read_index(path)


_BASE = make_hostile().valid_gguf()


def _check_consistent(found: WeightsIndex, size: int) -> None:
    """What a successful read promises: tensors in order, inside the file, not overlapping."""
    cursor = found.data_offset
    for info in found.tensors:
        assert cursor <= info.begin <= info.end <= size
        cursor = info.end


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), min_size=1, max_size=4
    ),
    cut=st.one_of(st.none(), st.integers(0, len(_BASE))),
)
def test_mutated_files_read_consistently_or_fail_cleanly(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int | None
) -> None:
    raw = bytearray(_BASE)
    for position, value in edits:
        raw[position] = value
    raw = raw[:cut] if cut is not None else raw
    path = tmp_path / "mutated.gguf"
    path.write_bytes(bytes(raw))
    try:
        found = gguf_format.read_index(path)
    except (MalformedFile, UnsupportedFormat) as exc:
        assert "\n" not in exc.diagnostics()
        return
    _check_consistent(found, len(raw))


@pytest.mark.slow
def test_the_demo_model_indexes() -> None:
    from ringfence.demo import demo_gguf

    found = gguf_format.read_index(demo_gguf())
    assert len(found.tensors) == 272
    assert found.parameter_count == 134_515_008
    embd = found.by_name()["token_embd.weight"]
    assert (embd.dtype, embd.shape) == ("Q8_0", (49152, 576))
    assert found.by_name()["blk.0.attn_k.weight"].shape == (192, 576)
    assert found.metadata["tokenizer.ggml.pre"] == "smollm"
    assert "tokenizer.ggml.merges" not in found.metadata


def test_a_file_without_tensors_may_not_carry_trailing_bytes(tmp_path: Path) -> None:
    """A vocabulary-only GGUF reads; bytes after its header are data no reader accounts for."""
    path = tmp_path / "vocab.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_token_list([f"tok{i}" for i in range(10)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_format.read_index(path).tensors == ()
    with path.open("ab") as fh:
        fh.write(b"\0" * 64 + b"hidden payload")
    with pytest.raises(MalformedFile, match="trailing data"):
        gguf_format.read_index(path)

"""Pickles are recognised by content and refused, never loaded."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import pytest

from ringfence.errors import UnsafeFormat
from ringfence.formats import pickles


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_is_recognised(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "weights.data"
    path.write_bytes(pickle.dumps({"layer.weight": [0.5] * 10, "step": 3}, protocol=protocol))
    assert pickles.looks_like_pickle(path)


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_torch_save_files_are_recognised(tmp_path: Path, zipfile_format: bool) -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(4)}, buffer, _use_new_zipfile_serialization=zipfile_format)
    path = tmp_path / "model.weights"
    path.write_bytes(buffer.getvalue())
    assert pickles.looks_like_pickle(path)


def test_a_long_string_past_the_prefix_still_counts(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(pickle.dumps("x" * 200_000, protocol=4))
    assert pickles.looks_like_pickle(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"# SmolLM2\nA small model.\n",
        b"(parenthesised prose is not a pickle)\n",
        b"c'est la vie\nand more text\n",
        json.dumps({"model_type": "llama"}).encode(),
        # a safetensors file whose header length starts with the PROTO opcode's bytes
        struct.pack("<Q", 0x280280) + b"{}",
        b"PK\x03\x04 not really a zip",
    ],
)
def test_other_files_are_not_pickles(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file"
    path.write_bytes(content)
    assert not pickles.looks_like_pickle(path)


def test_refuse_says_how_to_convert(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFormat) as caught:
        pickles.refuse(tmp_path / "model.bin")
    line = caught.value.diagnostics()
    assert line.startswith("model.bin is a pickle, which can run code when loaded")
    assert "safetensors.torch.save_file" in line and "\n" not in line

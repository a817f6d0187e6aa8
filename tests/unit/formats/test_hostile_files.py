"""Every checked-in hostile file is refused with the right RingfenceError and one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence import errors
from ringfence.formats import gguf, index, pickles, safetensors
from tests.unit.formats.hostile import HOSTILE_DIR, make_hostile

MAKE = make_hostile()
NAMES = sorted(MAKE.EXPECTED)


def _own_reader(name: str):  # type: ignore[no-untyped-def]
    """The reader a file's format calls for: pickles go through dispatch, like publish does."""
    if name in MAKE.PICKLES:
        return index.read_index
    if name.endswith(".safetensors"):
        return safetensors.read_index
    return gguf.read_index


def test_checked_in_files_match_the_script() -> None:
    built = MAKE.build_all()
    assert set(built) == set(MAKE.EXPECTED)
    for name, payload in built.items():
        assert (HOSTILE_DIR / name).read_bytes() == payload, f"rerun make_hostile.py ({name})"


@pytest.mark.parametrize("name", NAMES)
def test_format_reader_refuses_with_the_expected_error(name: str) -> None:
    expected = getattr(errors, MAKE.EXPECTED[name])
    with pytest.raises(errors.RingfenceError) as caught:
        _own_reader(name)(HOSTILE_DIR / name)
    assert type(caught.value) is expected, caught.value.diagnostics()
    line = caught.value.diagnostics()
    assert "\n" not in line and name in line
    # A hostile name or shape is quoted cut short: the person reads a line, not megabytes.
    assert len(line) < 400, line


@pytest.mark.parametrize("name", NAMES)
def test_dispatch_refuses_with_a_one_line_input_error(name: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        index.read_index(HOSTILE_DIR / name)
    assert "\n" not in caught.value.diagnostics()


@pytest.mark.parametrize("name", NAMES)
def test_only_pickles_look_like_pickles(name: str) -> None:
    assert pickles.looks_like_pickle(HOSTILE_DIR / name) == (name in MAKE.PICKLES)


def test_the_valid_base_gguf_reads(tmp_path: Path) -> None:
    path = tmp_path / "small.gguf"
    path.write_bytes(MAKE.valid_gguf())
    found = gguf.read_index(path)
    assert [(t.name, t.dtype, t.shape) for t in found.tensors] == [
        ("norm.weight", "F32", (8,)),
        ("embd.weight", "Q8_0", (2, 32)),
    ]
    assert found.tensors[1].begin == found.tensors[0].begin + 32
    assert found.tensors[1].nbytes == 2 * 34
    assert found.metadata == {"general.architecture": "llama", "general.alignment": 32}


#: what the files fuzzing found must be refused for (before, each read or crashed)
FOUND_BY_FUZZING = {
    "unpaired_surrogate_name.safetensors": "'\\ud800' is not valid Unicode",
    "unpaired_surrogate_metadata.safetensors": "'\\udc00' is not valid Unicode",
    "long_shape_of_huge_dims.safetensors": "needs more than the data section holds",
    "huge_tensor_name.safetensors": "(10000 characters)",
    "huge_tensor_name.gguf": "(5000 characters) starts at 40",
    "huge_metadata_key.gguf": "(5000 characters) has unknown value type 99",
}


@pytest.mark.parametrize("name", sorted(FOUND_BY_FUZZING))
def test_inputs_found_by_fuzzing_are_refused_saying_why(name: str) -> None:
    with pytest.raises(errors.MalformedFile) as caught:
        _own_reader(name)(HOSTILE_DIR / name)
    assert FOUND_BY_FUZZING[name] in caught.value.diagnostics()

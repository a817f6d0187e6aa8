"""Safetensors: a strict header reader and a small writer that handles bf16.

The reader checks everything the format specification
(https://github.com/huggingface/safetensors#format) requires, and a bit more, itself: the
`safetensors` library reports problems as one opaque error type, and we owe a person one line
saying what is wrong with which file.

    index = read_index(Path("model.safetensors"))
    index.by_name()["lm_head.weight"].begin  # absolute byte offset of the tensor's data

numpy has no bfloat16, so bf16 tensors are handled as their raw 16-bit words: the writer takes a
`uint16` array and a `{"name": "BF16"}` entry in `dtypes`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ringfence.errors import MalformedFile
from ringfence.formats.index import TensorInfo, WeightsIndex, quoted

#: the largest header we read; the reference implementation refuses more than 100 MB too
MAX_HEADER_BYTES = 100_000_000

#: bits per element of every dtype the format defines (safetensors 0.8's `Dtype` enum)
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

#: safetensors dtype names of the numpy dtypes the writer accepts as they are
_NUMPY_DTYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "complex64": "C64",
    "float64": "F64",
    "int64": "I64",
    "uint64": "U64",
}

_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_HINT = "the file is damaged or was not written by a safetensors writer; export it again"


def _fail(path: Path, problem: str) -> NoReturn:
    """Raise the one error every check below reports."""
    raise MalformedFile(f"{path.name} is not valid safetensors: {problem}", hint=_HINT)


class _NotUnicode(ValueError):
    """A JSON string whose escapes decode to an unpaired surrogate."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: a repeated key would let two readers see two different files.

    It also refuses unpaired surrogates (`"\\ud800"`): Python's json accepts them, the
    reference (Rust) reader does not, and a name that cannot be encoded as UTF-8 breaks every
    database, page and log it reaches later.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {quoted(key)}")
        for text in (key, value) if isinstance(value, str) else (key,):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise _NotUnicode(f"{quoted(text)} is not valid Unicode") from None
        result[key] = value
    return result


def _is_count(value: object) -> bool:
    """A JSON integer >= 0 (bool is an int in Python, but not in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_header(path: Path, fh: Any, file_size: int) -> tuple[int, dict[str, Any]]:
    """The header's length and its JSON object, bounds-checked before anything is allocated."""
    if file_size < 8:
        _fail(path, f"{file_size} bytes is too short for the 8-byte header length")
    (header_len,) = struct.unpack("<Q", fh.read(8))
    if header_len > MAX_HEADER_BYTES:
        _fail(path, f"header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if header_len > file_size - 8:
        _fail(path, f"header length {header_len} runs past the end of the {file_size}-byte file")
    raw = fh.read(header_len)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(path, f"header is not UTF-8 (byte {exc.start})")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except _NotUnicode as exc:
        _fail(path, f"header string {exc} (an unpaired surrogate escape)")
    except (ValueError, RecursionError) as exc:
        _fail(path, f"header is not JSON ({str(exc).splitlines()[0]})")
    if not isinstance(header, dict):
        _fail(path, f"header is a JSON {type(header).__name__}, not an object")
    return header_len, header


def _check_metadata(path: Path, metadata: object) -> dict[str, str]:
    """`__metadata__` must map strings to strings."""
    if not isinstance(metadata, dict):
        _fail(path, "__metadata__ is not an object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            _fail(path, f"__metadata__ value for {quoted(key)} is not a string")
    return dict(metadata)


def _check_entry(path: Path, name: str, entry: object, data_len: int) -> tuple[str, Any, int, int]:
    """One tensor entry: exact keys, known dtype, valid shape and offsets, consistent size."""
    if not isinstance(entry, dict):
        _fail(path, f"entry for tensor {quoted(name)} is not an object")
    if set(entry) != _ENTRY_KEYS:
        wrong = [f"missing {k!r}" for k in sorted(_ENTRY_KEYS - set(entry))]
        wrong += [f"unexpected {quoted(k)}" for k in sorted(set(entry) - _ENTRY_KEYS)]
        _fail(path, f"tensor {quoted(name)} has {', '.join(wrong)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        _fail(path, f"tensor {quoted(name)} has unknown dtype {quoted(dtype)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        _fail(
            path, f"tensor {quoted(name)} has a shape that is not a list of non-negative integers"
        )
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        _fail(
            path, f"tensor {quoted(name)} has data_offsets that are not two non-negative integers"
        )
    begin, end = offsets
    if begin > end or end > data_len:
        _fail(path, f"tensor {quoted(name)} has offsets [{begin}, {end}] outside the data section")
    numel = _element_count(shape, limit=8 * data_len)
    bits = numel * DTYPE_BITS[dtype] if numel is not None else None
    if bits is None or bits % 8 or bits // 8 != end - begin:
        needs = f"{bits / 8:g} bytes" if bits is not None else "more than the data section holds"
        _fail(
            path,
            f"tensor {quoted(name)} is {end - begin} bytes but {dtype} of shape "
            f"{_shape_text(shape)} needs {needs}",
        )
    return dtype, shape, begin, end


def _element_count(shape: list[int], limit: int) -> int | None:
    """The product of `shape`, or None as soon as it passes `limit`.

    Multiplying out a hostile shape (a million dimensions of 2**64) would take minutes and
    build an integer no float can hold; no tensor has more elements than its bytes have bits.
    """
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > limit:
            return None
    return count


def _shape_text(shape: list[int]) -> str:
    """A shape as an error message shows it: the first dimensions and the rank."""
    if len(shape) <= 4:
        return str(shape)
    return f"[{', '.join(str(d)[:20] for d in shape[:4])}, ...] (rank {len(shape)})"


def read_index(path: Path) -> WeightsIndex:
    """Validate a safetensors file's header strictly and return its tensor index.

    Raises `MalformedFile` with one line naming the problem.
    """
    path = Path(path)
    file_size = path.stat().st_size
    with path.open("rb") as fh:
        header_len, header = _read_header(path, fh, file_size)
    data_offset = 8 + header_len
    data_len = file_size - data_offset
    metadata = _check_metadata(path, header.pop("__metadata__", {}))

    entries = []
    for name, entry in header.items():
        dtype, shape, begin, end = _check_entry(path, name, entry, data_len)
        entries.append((begin, end, name, dtype, tuple(shape)))
    # The data section must be exactly the tensors laid end to end: a gap or an overlap is
    # room for bytes that one reader sees and another does not.
    entries.sort(key=lambda e: (e[0], e[1]))
    cursor = 0
    for begin, end, name, _dtype, _shape in entries:
        if begin > cursor:
            _fail(path, f"{begin - cursor} unused bytes before tensor {quoted(name)}")
        if begin < cursor:
            _fail(path, f"tensor {quoted(name)} overlaps the tensor before it")
        cursor = end
    if cursor != data_len:
        _fail(path, f"{data_len - cursor} bytes after the last tensor (trailing data)")

    tensors = tuple(
        TensorInfo(name, dtype, shape, data_offset + begin, data_offset + end)
        for begin, end, name, dtype, shape in entries
    )
    return WeightsIndex("safetensors", data_offset, file_size, tensors, metadata)


def bf16_words(values: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 raw words (uint16) with round-to-nearest-even.

    Implements the rounding of `torch`'s `round_to_nearest_even` (c10/util/BFloat16.h): add
    0x7FFF plus the lowest kept bit, then drop the low 16 bits; NaNs stay quiet NaNs.
    """
    words = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = words + (np.uint32(0x7FFF) + ((words >> np.uint32(16)) & np.uint32(1)))
    out = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = ((words[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bf16_to_f32(words: np.ndarray) -> np.ndarray:
    """bf16 raw words (uint16) -> fp32, exactly."""
    return (np.asarray(words, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def write_safetensors(
    path: Path,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    *,
    dtypes: Mapping[str, str] | None = None,
) -> None:
    """Write tensors (in the given order) as a safetensors file; `dtypes` relabels raw words.

    We write the file ourselves because numpy has no bf16 and the library's raw-bytes API
    changed between releases. Example: `write_safetensors(p, {"w": bf16_words(x)},
    dtypes={"w": "BF16"})`.
    """
    dtypes = dtypes or {}
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    arrays: list[np.ndarray] = []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        stored = _NUMPY_DTYPES.get(array.dtype.name)
        dtype = dtypes.get(name, stored)
        if dtype is None or stored is None or DTYPE_BITS[dtype] != 8 * array.dtype.itemsize:
            raise ValueError(f"cannot store {quoted(name)} ({array.dtype}) as {dtype}")
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
        arrays.append(array)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
    encoded += b" " * (-len(encoded) % 8)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        fh.write(struct.pack("<Q", len(encoded)))
        fh.write(encoded)
        for array in arrays:
            fh.write(array.reshape(-1).view(np.uint8).data)
    os.replace(tmp, path)

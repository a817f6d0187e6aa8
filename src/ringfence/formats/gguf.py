"""GGUF (llama.cpp's format): a bounds-checked header walk, then the `gguf` library's reader.

`gguf.GGUFReader` trusts the counts a file states: an array claiming 2**63 elements makes it loop
for ever, and offsets past the end surface as assorted numpy errors. So `checked_reader` first
walks the header itself with every count bounded by the bytes that remain (the same checks as
ggml's `gguf_init_from_file_impl` in ggml/src/gguf.cpp), and only then hands the file to the
library, translating anything it still raises into `MalformedFile`.

    index = read_index(Path("model.Q4_1.gguf"))
    index.by_name()["token_embd.weight"].dtype  # "Q8_0"
"""

from __future__ import annotations

import math
import mmap
import struct
from pathlib import Path
from typing import Any, NoReturn

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

from ringfence.errors import MalformedFile, UnsupportedFormat
from ringfence.formats.index import TensorInfo, WeightsIndex, quoted

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 2**63 - 1  # ggml counts elements in int64_t
#: arrays longer than this stay out of the index's metadata (the tokenizer's vocabulary etc.)
METADATA_ARRAY_LIMIT = 16

_SCALAR_SIZES = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_HINT = "the file is damaged or was not written by a GGUF writer; export it again"


def _fail(path: Path, problem: str) -> NoReturn:
    """Raise the one error every check below reports."""
    raise MalformedFile(f"{path.name} is not valid GGUF: {problem}", hint=_HINT)


class _Walker:
    """A cursor over the file's bytes that refuses to read past the end."""

    def __init__(self, path: Path, buf: mmap.mmap, size: int) -> None:
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def remaining(self) -> int:
        return self.size - self.pos

    def take(self, fmt: str, what: str) -> Any:
        width = struct.calcsize(fmt)
        if width > self.remaining():
            _fail(self.path, f"truncated while reading {what} at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += width
        return value

    def skip(self, count: int, what: str) -> None:
        if count > self.remaining():
            _fail(self.path, f"{what} of {count} bytes runs past the end at byte {self.pos}")
        self.pos += count

    def string(self, what: str) -> str:
        length = self.take("<Q", f"the length of {what}")
        start = self.pos
        self.skip(length, what)
        try:
            return bytes(self.buf[start : self.pos]).decode("utf-8")
        except UnicodeDecodeError:
            _fail(self.path, f"{what} at byte {start} is not UTF-8")

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.take("<I", f"the type of {what}")
        try:
            return GGUFValueType(raw)
        except ValueError:
            _fail(self.path, f"{what} has unknown value type {raw}")


def _walk_value(walker: _Walker, key: str, vtype: GGUFValueType) -> Any:
    """Skip one metadata value; return it when it is a scalar that matters to the layout."""
    if vtype == GGUFValueType.STRING:
        walker.string(f"the value of {quoted(key)}")
        return None
    if vtype == GGUFValueType.ARRAY:
        itype = walker.value_type(f"the items of {quoted(key)}")
        count = walker.take("<Q", f"the length of {quoted(key)}")
        if itype == GGUFValueType.ARRAY:
            _fail(walker.path, f"{quoted(key)} is an array of arrays, which GGUF does not allow")
        if itype == GGUFValueType.STRING:
            if count > walker.remaining() // 8:
                _fail(
                    walker.path, f"{quoted(key)} claims {count} strings, more than the file holds"
                )
            for _ in range(count):
                walker.string(f"an item of {quoted(key)}")
        else:
            walker.skip(count * _SCALAR_SIZES[itype], f"the array {quoted(key)}")
        return None
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[_SCALAR_SIZES[vtype]]
    return walker.take(fmt, f"the value of {quoted(key)}")


def _walk_header(path: Path, buf: mmap.mmap, size: int) -> None:
    """Check every count, length, type and offset before the library sees the file."""
    walker = _Walker(path, buf, size)
    if size < 4 or bytes(buf[:4]) != MAGIC:
        _fail(path, "it does not start with the GGUF magic bytes")
    walker.pos = 4
    version = walker.take("<I", "the version")
    if version & 0xFFFF == 0 and version:
        raise UnsupportedFormat(
            f"{path.name} is a big-endian GGUF", hint="convert it to little-endian GGUF"
        )
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedFormat(
            f"{path.name} is GGUF version {version}; ringfence reads versions 2 and 3",
            hint="re-export it with a current llama.cpp",
        )
    tensor_count = walker.take("<Q", "the tensor count")
    kv_count = walker.take("<Q", "the metadata count")
    if kv_count > walker.remaining() // _MIN_KV_BYTES:
        _fail(path, f"it claims {kv_count} metadata entries, more than the file could hold")
    alignment = DEFAULT_ALIGNMENT
    keys: set[str] = set()
    for _ in range(kv_count):
        key = walker.string("a metadata key")
        if key in keys:
            _fail(path, f"metadata key {quoted(key)} appears twice")
        keys.add(key)
        vtype = walker.value_type(f"metadata {quoted(key)}")
        value = _walk_value(walker, key, vtype)
        if key == "general.alignment":
            if vtype != GGUFValueType.UINT32 or not value or value & (value - 1):
                _fail(path, "general.alignment is not a power of two stored as uint32")
            alignment = value

    if tensor_count > walker.remaining() // _MIN_TENSOR_INFO_BYTES:
        _fail(path, f"it claims {tensor_count} tensors, more than the file could hold")
    names: set[str] = set()
    layout: list[tuple[int, int, str]] = []
    for _ in range(tensor_count):
        name = walker.string("a tensor name")
        if name in names:
            _fail(path, f"tensor {quoted(name)} appears twice")
        names.add(name)
        n_dims = walker.take("<I", f"the rank of {quoted(name)}")
        if n_dims > MAX_DIMS:
            _fail(path, f"tensor {quoted(name)} has {n_dims} dimensions; GGUF allows {MAX_DIMS}")
        dims = [walker.take("<Q", f"the shape of {quoted(name)}") for _ in range(n_dims)]
        raw_type = walker.take("<I", f"the type of {quoted(name)}")
        offset = walker.take("<Q", f"the offset of {quoted(name)}")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
            block, type_size = GGML_QUANT_SIZES[ggml_type]
        except (ValueError, KeyError):
            _fail(path, f"tensor {quoted(name)} has unknown type {raw_type}")
        numel = math.prod(dims)
        if numel > MAX_ELEMENTS:
            _fail(path, f"tensor {quoted(name)} claims {numel} elements")
        if dims and dims[0] % block:
            _fail(path, f"tensor {quoted(name)} has a row of {dims[0]}, not a multiple of {block}")
        if offset % alignment:
            _fail(path, f"tensor {quoted(name)} starts at {offset}, not a multiple of {alignment}")
        layout.append((offset, numel // block * type_size, name))

    data_offset = walker.pos + (-walker.pos % alignment)
    # ggml requires each tensor exactly where the previous one ends (padded to the alignment);
    # anything else is room for bytes that one reader uses and another skips.
    expected = 0
    for offset, nbytes, name in layout:
        if offset != expected:
            _fail(
                path, f"tensor {quoted(name)} starts at data offset {offset}, expected {expected}"
            )
        if data_offset + offset + nbytes > size:
            _fail(path, f"tensor {quoted(name)} runs past the end of the {size}-byte file")
        expected = offset + nbytes + (-nbytes % alignment)
    # A file without tensors (a vocabulary-only GGUF) ends at its header or at its padding.
    trailing = size - data_offset - expected if layout else size - max(walker.pos, data_offset)
    if trailing > 0:
        _fail(path, f"{trailing} bytes after the last tensor (trailing data)")


def checked_reader(path: Path) -> GGUFReader:
    """A `GGUFReader` on a file whose header has been checked first; `MalformedFile` if not."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        _fail(path, "the file is empty")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        _walk_header(path, buf, size)
    try:
        return GGUFReader(path)
    # The header walk above covers what we know of; anything the library still rejects on
    # untrusted bytes is a malformed file, not a crash.
    except Exception as exc:
        _fail(path, f"the gguf library rejects it ({type(exc).__name__}: {str(exc)[:80]})")


def _metadata(reader: GGUFReader) -> dict[str, Any]:
    """Scalar, string and short array fields; long arrays (the vocabulary) are left out."""
    result: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or not field.types:
            continue
        if field.types[0] == GGUFValueType.ARRAY and len(field.data) > METADATA_ARRAY_LIMIT:
            continue
        try:
            result[key] = field.contents()
        except (ValueError, UnicodeDecodeError):
            continue
    return result


def index_of(path: Path, reader: GGUFReader) -> WeightsIndex:
    """The tensor index of a file opened with `checked_reader`."""
    tensors = tuple(
        TensorInfo(
            name=t.name,
            dtype=t.tensor_type.name,
            # GGUF lists dimensions fastest-varying first; numpy order is the reverse.
            shape=tuple(int(d) for d in reversed(t.shape.tolist())),
            begin=int(t.data_offset),
            end=int(t.data_offset) + int(t.n_bytes),
        )
        for t in reader.tensors
    )
    return WeightsIndex(
        "gguf", int(reader.data_offset), Path(path).stat().st_size, tensors, _metadata(reader)
    )


def read_index(path: Path) -> WeightsIndex:
    """Validate a GGUF file and return its tensor index.

    Raises `MalformedFile` for a broken or hostile file, `UnsupportedFormat` for a GGUF
    version or byte order we do not read.
    """
    return index_of(path, checked_reader(path))

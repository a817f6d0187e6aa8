"""Structure-aware fuzz inputs for the safetensors and GGUF readers, and the oracle they face.

One set of generators serves two sources of choices: hypothesis in the tests (so a failure
shrinks to a small input) and a seeded `random.Random` in bench/fuzz_bench.py (so 10^6 inputs
cost seconds, not hours). Each generator builds a valid file, then lies about it: length fields,
counts, types, offsets, names, truncation, trailing bytes, flipped bytes.

The oracle (`check`) states the readers' promise: a file reads, and what it reads is
consistent, or the reader raises a `RingfenceError` with one line; anything else is a crash.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ringfence.errors import RingfenceError
from ringfence.formats import gguf as gguf_format
from ringfence.formats import safetensors as st_format
from ringfence.formats.index import WeightsIndex
from ringfence.formats.index import read_index as dispatch_read_index

T = TypeVar("T")


class Choices(Protocol):
    """Where a generator's decisions come from (hypothesis or a seeded RNG)."""

    def integer(self, low: int, high: int) -> int: ...
    def choice(self, options: Sequence[T]) -> T: ...
    def blob(self, max_size: int) -> bytes: ...


class RandomChoices:
    """Choices from a seeded `random.Random`: fast, for the bench."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def blob(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))


class HypothesisChoices:
    """Choices drawn through hypothesis's `st.data()`: shrinkable, for the tests."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, low: int, high: int) -> int:
        return int(self.data.draw(self.st.integers(low, high)))

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def blob(self, max_size: int) -> bytes:
        return bytes(self.data.draw(self.st.binary(max_size=max_size)))


#: integers that break length and offset arithmetic: zero, edges of every width, and beyond
EDGE_INTS = (0, 1, 2, 3, 7, 8, 31, 32, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32)
EDGE_INTS += (2**53 + 1, 2**60, 2**62, 2**63 - 1, 2**63, 2**64 - 1)


def _edge(c: Choices, near: int = 0) -> int:
    """An edge integer, or one just around `near` (a true length or offset)."""
    if c.integer(0, 2):
        return c.choice(EDGE_INTS)
    return max(0, near + c.integer(-9, 9))


def _flip_bytes(c: Choices, raw: bytes) -> bytes:
    """Overwrite up to four bytes of `raw` at chosen places."""
    out = bytearray(raw)
    for _ in range(c.integer(1, 4)):
        if out:
            out[c.integer(0, len(out) - 1)] = c.integer(0, 255)
    return bytes(out)


def _finish(c: Choices, raw: bytes) -> bytes:
    """The file-level lies both formats share: truncation, trailing bytes, flipped bytes."""
    what = c.integer(0, 9)
    if what == 0 and raw:
        return raw[: c.integer(0, len(raw) - 1)]
    if what == 1:
        return raw + c.blob(64)
    if what == 2:
        return _flip_bytes(c, raw)
    return raw


# ---------------------------------------------------------------- safetensors

_ST_DTYPES = tuple(st_format.DTYPE_BITS)
_JSON_ODDITIES: tuple[object, ...] = (
    None,
    True,
    False,
    -1,
    0.5,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "F32",
    [],
    {},
    [[1]],
    [-1, 2],
    [2**64],
    [True],
    "\ud800",
    10**30,
)


def _st_value(c: Choices, key: str, size: int) -> object:
    """A wrong value for one entry key: sometimes plausible, sometimes absurd."""
    if c.integer(0, 2) == 0:
        return c.choice(_JSON_ODDITIES)
    if key == "dtype":
        return c.choice((*_ST_DTYPES, "F31", "f32", "BF32", "F8", "Q4_0"))
    if key == "shape":
        if c.integer(0, 9) == 0:  # a long shape of big dimensions: slow to multiply out
            return [c.choice((2, 3, 2**64 - 1))] * c.choice((100, 10_000, 100_000))
        return [_edge(c, 3) for _ in range(c.integer(0, 5))]
    begin, end = _edge(c, 0), _edge(c, size)
    return c.choice(([begin, end], [end, begin], [begin], [begin, end, end]))


@dataclass
class _StDraft:
    """A safetensors file before it is written: the header dict and the data section."""

    header: dict[str, Any]
    data_len: int
    length_field: int | None = None
    raw_header: bytes | None = None
    names: list[str] = field(default_factory=list)


def _st_valid(c: Choices) -> _StDraft:
    """A valid file: up to four small tensors laid end to end, sometimes with metadata."""
    header: dict[str, Any] = {}
    if c.integer(0, 1):
        header["__metadata__"] = {"format": "pt"}
    offset, names = 0, []
    for i in range(c.integer(0, 4)):
        dtype = c.choice(_ST_DTYPES)
        shape = [c.integer(0, 4) for _ in range(c.integer(0, 3))]
        bits = math.prod(shape) * st_format.DTYPE_BITS[dtype]
        nbytes = -(-bits // 8)
        name = c.choice(("w", "model.embed.weight", "lm_head.weight", "é", "a b")) + str(i)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        names.append(name)
    return _StDraft(header, offset, names=names)


def _st_mutate_entry(c: Choices, d: _StDraft) -> None:
    key = c.choice(("dtype", "shape", "data_offsets", "data_offsets", "extra"))
    name = c.choice([*d.names, "__metadata__", "new"])
    entry = d.header.setdefault(name, {})
    if not isinstance(entry, dict):
        return
    if key == "extra" or c.integer(0, 5) == 0:
        entry.pop(c.choice(("dtype", "shape", "data_offsets")), None)
        entry[c.choice(("extra", "format", "dtype"))] = c.choice(_JSON_ODDITIES)
    else:
        entry[key] = _st_value(c, key, d.data_len)


def _plain_entry(entry: object) -> bool:
    """An entry whose offsets an earlier mutation left as two integers."""
    if not isinstance(entry, dict):
        return False
    offsets = entry.get("data_offsets")
    return isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)


def _st_mutate_layout(c: Choices, d: _StDraft) -> None:
    """Offsets out of order, overlapping, with gaps, or beyond the data."""
    if len(d.names) < 2:
        d.data_len = _edge(c, d.data_len) % 4096
        return
    ea, eb = d.header.get(c.choice(d.names)), d.header.get(c.choice(d.names))
    if not (_plain_entry(ea) and _plain_entry(eb)):
        return
    assert isinstance(ea, dict) and isinstance(eb, dict)
    what = c.integer(0, 3)
    if what == 0:
        ea["data_offsets"], eb["data_offsets"] = eb["data_offsets"], ea["data_offsets"]
    elif what == 1:
        ea["data_offsets"] = list(eb["data_offsets"])
    elif what == 2:
        ea["data_offsets"] = [x + c.integer(-3, 3) for x in ea["data_offsets"]]
    else:
        d.data_len = max(0, d.data_len + c.integer(-8, 8))


def _st_mutate_names(c: Choices, d: _StDraft) -> None:
    """Names a second reader might see differently: empty, unpaired surrogate, reserved."""
    if d.names:
        old = c.choice(d.names)
        new = c.choice(("", "\ud800", "\udfff.weight", "__metadata__", "x" * 100_000, "\x00"))
        d.header[new] = d.header.pop(old)
        d.names[d.names.index(old)] = new


def _st_mutate_metadata(c: Choices, d: _StDraft) -> None:
    d.header["__metadata__"] = c.choice(
        ({"step": 1}, {"k": None}, [], "pt", {"\ud800": "x"}, {"k": "\udc00"}, {"": ""})
    )


def _st_mutate_text(c: Choices, d: _StDraft) -> None:
    """Lies in the JSON text itself: duplicate keys, NaN, huge numbers, nesting, bad bytes."""
    text = json.dumps(d.header, separators=(",", ":")).encode()
    what = c.integer(0, 4)
    if what == 0 and d.names:
        entry = json.dumps(d.header[d.names[0]]).encode()
        text = text[:-1] + b"," + json.dumps(d.names[0]).encode() + b":" + entry + b"}"
    elif what == 1:
        text = text.replace(b"0", c.choice((b"NaN", b"1e400", b"-0", b"0.0", b"99999999999999")), 1)
    elif what == 2:
        depth = c.choice((10, 1000, 100_000))
        text = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    elif what == 3:
        text = text.replace(b'"', c.choice((b'"\xff', b'"\xc3', b'"\\ud800', b"'")), 1)
    else:
        text = _flip_bytes(c, text)
    d.raw_header = text


def _st_mutate_length(c: Choices, d: _StDraft) -> None:
    d.length_field = _edge(c, len(json.dumps(d.header)))


_ST_MUTATIONS: tuple[Callable[[Choices, _StDraft], None], ...] = (
    _st_mutate_entry,
    _st_mutate_entry,
    _st_mutate_layout,
    _st_mutate_layout,
    _st_mutate_names,
    _st_mutate_metadata,
    _st_mutate_text,
    _st_mutate_length,
)


def safetensors_input(c: Choices) -> bytes:
    """A safetensors file, valid or lying in up to three ways."""
    d = _st_valid(c)
    for _ in range(c.choice((1, 2, 3, 0))):
        c.choice(_ST_MUTATIONS)(c, d)
    if d.raw_header is not None:
        text = d.raw_header
    else:
        # ensure_ascii=False writes an unpaired surrogate as raw bytes, which is not UTF-8.
        ascii_only = bool(c.integer(0, 1))
        dumped = json.dumps(d.header, ensure_ascii=ascii_only, separators=(",", ":"))
        text = dumped.encode("utf-8", "surrogatepass")
        text += b" " * (-len(text) % 8)
    length = len(text) if d.length_field is None else d.length_field
    raw = struct.pack("<Q", length % 2**64) + text + bytes(d.data_len)
    return _finish(c, raw)


# ---------------------------------------------------------------- GGUF

_STRING, _ARRAY = 8, 9
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B"}
_SCALAR_FORMATS |= {10: "<Q", 11: "<q", 12: "<d"}
_GGML_TYPES = tuple(t for t in GGMLQuantizationType if t in GGML_QUANT_SIZES)


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value % 2**64)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value % 2**32)


class _Lies:
    """Where a GGUF draft lies: each chance site lies with one rate per file (zero for some)."""

    def __init__(self, c: Choices) -> None:
        self.c, self.rate = c, c.choice((0, 0, 6, 12, 24))

    def __call__(self) -> bool:
        return bool(self.rate) and self.c.integer(0, self.rate - 1) == 0


def _gguf_string(c: Choices, text: bytes, lie: bool) -> bytes:
    """A GGUF string, whose length field may lie."""
    return _u64(_edge(c, len(text)) if lie else len(text)) + text


def _gguf_value(c: Choices, vtype: int, lies: _Lies) -> bytes:
    """The bytes of one metadata value of type `vtype` (any u32, even an unknown one)."""
    if vtype in _SCALAR_FORMATS:
        width = struct.calcsize(_SCALAR_FORMATS[vtype])
        return c.blob(width).ljust(width, b"\x00")
    if vtype == _STRING:
        text = c.choice((b"llama", b"", "é".encode(), b"\xff\xfe" if lies() else b"gpt2"))
        return _gguf_string(c, text, lies())
    if vtype == _ARRAY:
        itype = c.choice((0, 4, 6, 7, 8, 8, 12)) if not lies() else c.choice((9, 13, 2**31))
        count = c.integer(0, 20)
        known = itype in _SCALAR_FORMATS or itype == _STRING
        items = b"".join(_gguf_value(c, itype, lies) for _ in range(count if known else 0))
        if itype == _ARRAY:
            items = (_u32(0) + _u64(0)) * count
        return _u32(itype) + _u64(_edge(c, count) if lies() else count) + items
    return c.blob(8)


def _gguf_kv(c: Choices, key: bytes, lies: _Lies) -> bytes:
    """One metadata entry with a value of a chosen (or unknown) type."""
    vtype = c.choice((*_SCALAR_FORMATS, _STRING, _STRING, _ARRAY, _ARRAY))
    if lies():
        vtype = c.choice((13, 14, 2**32 - 1, *_SCALAR_FORMATS))
    return _gguf_string(c, key, lies()) + _u32(vtype) + _gguf_value(c, vtype, lies)


def _pads(alignment: int) -> bool:
    """Whether the writer pads to this alignment (a power of two small enough to write)."""
    return 0 < alignment <= 64 and not alignment & (alignment - 1)


def _gguf_alignment_kv(c: Choices, alignment: int, lies: _Lies) -> bytes:
    """general.alignment, sometimes stored as the wrong type."""
    atype = 4 if not lies() else c.choice((10, 5, _STRING))
    payload = _u32(alignment) if atype in (4, 5) else _u64(alignment)
    if atype == _STRING:
        payload = _u64(2) + b"32"
    return _gguf_string(c, b"general.alignment", False) + _u32(atype) + payload


def _gguf_tensor(c: Choices, i: int, offset: int, alignment: int, lies: _Lies) -> tuple[bytes, int]:
    """One tensor info (name, rank, dims, type, offset) and its data size, perhaps lying."""
    ggml_type = c.choice(_GGML_TYPES)
    block, type_size = GGML_QUANT_SIZES[ggml_type]
    dims = [block * c.integer(1, 2), *(c.integer(1, 3) for _ in range(c.integer(0, 2)))]
    nbytes = math.prod(dims) // block * type_size
    raw_type, tensor_offset = int(ggml_type), offset
    if lies():
        dims = [_edge(c, d) for d in dims] + [1] * c.integer(0, 4)
    if lies():
        dims = [0, *dims[1:]] if c.integer(0, 1) else [d * 2**31 for d in dims] * 2
    if lies():
        raw_type = c.choice((4, 5, 31, 36, 99, 2**32 - 1, *(int(t) for t in _GGML_TYPES)))
    if lies():
        tensor_offset = _edge(c, offset) if c.integer(0, 1) else offset + c.choice((1, alignment))
    name = c.choice((b"blk.0.attn_q.weight", b"output.weight", b"t", b"")) + str(i).encode()
    if lies():
        name = c.choice((b"\xc3", b"t0", b"blk.0.attn_q.weight0", b"n" * 5000))
    info = _gguf_string(c, name, lies()) + _u32(len(dims))
    info += b"".join(_u64(d) for d in dims) + _u32(raw_type) + _u64(tensor_offset)
    return info, nbytes


def gguf_input(c: Choices) -> bytes:
    """A GGUF file, valid or lying about its magic, version, counts, types, lengths or layout."""
    lies = _Lies(c)
    alignment = c.choice((32, 32, 16, 64, 1)) if not lies() else c.choice((0, 3, 2**31, 2**32))
    kvs = [_gguf_string(c, b"general.architecture", False) + _u32(_STRING)]
    kvs[0] += _gguf_string(c, b"llama", lies())
    if alignment != 32 or c.integer(0, 1):
        kvs.append(_gguf_alignment_kv(c, alignment, lies))
    for i in range(c.integer(0, 4)):
        key = c.choice((b"general.name", b"tokenizer.ggml.tokens", b"llama.context_length"))
        if lies():
            key = c.choice((b"x.\xff", b"general.alignment", b"general.architecture", b"k" * 5000))
        kvs.append(_gguf_kv(c, key + str(i).encode(), lies))

    infos, data, offset = [], b"", 0
    for i in range(c.integer(0, 3)):
        info, nbytes = _gguf_tensor(c, i, offset, alignment, lies)
        pad = -nbytes % alignment if _pads(alignment) else 0
        infos.append(info)
        data += c.blob(8)[:nbytes].ljust(nbytes, b"\x00") + bytes(pad)
        offset += nbytes + pad

    magic = b"GGUF" if not lies() else c.choice((b"GGUG", b"FUGG", b"", b"GGU"))
    version = 3 if not lies() else c.choice((0, 1, 2, 4, 3 << 24, 2**32 - 1))
    n_tensors = len(infos) if not lies() else _edge(c, len(infos))
    n_kvs = len(kvs) if not lies() else _edge(c, len(kvs))
    head = magic + _u32(version) + _u64(n_tensors) + _u64(n_kvs) + b"".join(kvs) + b"".join(infos)
    if _pads(alignment):
        head += bytes(-len(head) % alignment)
    return _finish(c, head + data)


def raw_input(c: Choices) -> bytes:
    """Random bytes, sometimes behind a format's magic so they get past the first check."""
    prefix = c.choice((b"", b"GGUF\x03\x00\x00\x00", b"GGUF\x02\x00\x00\x00", _u64(2) + b"{}"))
    return prefix + c.blob(256)


# ---------------------------------------------------------------- the oracle


class Crash(Exception):
    """A reader broke its promise on one input; carries the input to check in."""

    def __init__(self, reader: str, raw: bytes, problem: str) -> None:
        super().__init__(f"{reader} on {len(raw)} bytes: {problem}")
        self.reader, self.raw, self.problem = reader, raw, problem


def _consistent_safetensors(found: WeightsIndex, size: int) -> str | None:
    """What a successful read promises: tensors tile the data section exactly."""
    cursor = found.data_offset
    for info in sorted(found.tensors, key=lambda t: t.begin):
        if info.begin != cursor:
            return f"tensor {info.name!r} does not start where the previous one ends"
        if info.nbytes * 8 != info.numel * st_format.DTYPE_BITS[info.dtype]:
            return f"tensor {info.name!r} has the wrong size"
        cursor = info.end
    return None if cursor == size == found.file_size else "tensors do not end at the end"


def _consistent_gguf(found: WeightsIndex, size: int) -> str | None:
    """What a successful read promises: tensors in order, inside the file, not overlapping."""
    cursor = found.data_offset
    for info in found.tensors:
        if not cursor <= info.begin <= info.end <= size:
            return f"tensor {info.name!r} lies outside [{cursor}, {size}]"
        cursor = info.end
    return None


def _names_are_text(found: WeightsIndex) -> str | None:
    """Every name and metadata string must survive UTF-8 (the database, JSON, a terminal)."""
    texts = [t.name for t in found.tensors]
    for key, value in found.metadata.items():
        texts.append(key)
        texts.extend(
            v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)
        )
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"name or metadata {text!r} is not valid Unicode"
    return None


READERS: dict[str, tuple[Callable[[Path], WeightsIndex], str, Callable[..., str | None]]] = {
    "safetensors": (st_format.read_index, ".safetensors", _consistent_safetensors),
    "gguf": (gguf_format.read_index, ".gguf", _consistent_gguf),
    "dispatch": (dispatch_read_index, ".weights", lambda found, size: None),
}


#: a person reads the message; a hostile name quoted in full would be megabytes of it
MAX_MESSAGE_CHARS = 600


def check(reader: str, raw: bytes, folder: Path) -> bool:
    """Read `raw` with one reader; True if it read, False if refused cleanly, `Crash` if not."""
    read, suffix, consistent = READERS[reader]
    path = folder / f"input{suffix}"
    path.write_bytes(raw)
    try:
        found = read(path)
    except RingfenceError as exc:
        line = exc.diagnostics()
        if "\n" in line or not line or len(line) > MAX_MESSAGE_CHARS:
            raise Crash(reader, raw, f"a {type(exc).__name__} without one line: {line!r}") from exc
        return False
    except Exception as exc:  # the promise: nothing but a RingfenceError escapes
        raise Crash(reader, raw, f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    problem = consistent(found, len(raw)) or _names_are_text(found)
    if problem:
        raise Crash(reader, raw, f"read an inconsistent index: {problem}")
    return True


#: which generator feeds which reader, for the bench and the tests alike
TARGETS: dict[str, tuple[Callable[[Choices], bytes], str]] = {
    "safetensors (structured)": (safetensors_input, "safetensors"),
    "gguf (structured)": (gguf_input, "gguf"),
    "safetensors (raw bytes)": (raw_input, "safetensors"),
    "gguf (raw bytes)": (raw_input, "gguf"),
    "dispatch (raw bytes)": (raw_input, "dispatch"),
}

"""Regenerate the hostile weights files in this folder: `python tests/data/hostile/make_hostile.py`.

Each file is small and named after what it attacks; `EXPECTED` says which RingfenceError the
format layer must answer it with. Everything is built byte by byte (no library writers), so the
files stay identical from run to run; a test checks that they match this script.
The pickles are harmless even if someone did load them: they reference a module that does not
exist.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- safetensors


def st_bytes(header: object, data: bytes, *, raw_header: bytes | None = None) -> bytes:
    """A safetensors file: u64 LE header length, the header, the data section."""
    encoded = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def _two_tensors(**changes: object) -> bytes:
    """Two F32 tensors a[2] and b[3], with entries changed as given."""
    header: dict[str, object] = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]},
    }
    header.update(changes)
    return st_bytes(header, bytes(20))


SAFETENSORS: dict[str, Callable[[], bytes]] = {
    "empty.safetensors": lambda: b"",
    "too_short.safetensors": lambda: b"\x10\x00\x00",
    "huge_header_length.safetensors": lambda: struct.pack("<Q", 2**63) + b"{}",
    "header_length_beyond_eof.safetensors": lambda: struct.pack("<Q", 4096) + b'{"a": 1}',
    "header_not_utf8.safetensors": lambda: st_bytes(None, b"", raw_header=b'{"\xff\xfe": 1}'),
    "header_not_json.safetensors": lambda: st_bytes(None, b"", raw_header=b"{not json at all"),
    "header_not_object.safetensors": lambda: st_bytes([1, 2, 3], b""),
    "deeply_nested_header.safetensors": lambda: st_bytes(
        None, b"", raw_header=b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    ),
    "duplicate_tensor_name.safetensors": lambda: st_bytes(
        None,
        bytes(8),
        raw_header=b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
    ),
    "metadata_not_strings.safetensors": lambda: _two_tensors(__metadata__={"step": 1000}),
    "entry_not_object.safetensors": lambda: _two_tensors(b="F32"),
    "unknown_dtype.safetensors": lambda: _two_tensors(
        b={"dtype": "F31", "shape": [3], "data_offsets": [8, 20]}
    ),
    "extra_entry_key.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [3], "data_offsets": [8, 20], "note": "x"}
    ),
    "missing_data_offsets.safetensors": lambda: _two_tensors(b={"dtype": "F32", "shape": [3]}),
    "negative_shape.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [-3], "data_offsets": [8, 20]}
    ),
    "bool_in_shape.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [True, 3], "data_offsets": [8, 20]}
    ),
    "float_offsets.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [3], "data_offsets": [8.0, 20]}
    ),
    "reversed_offsets.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [3], "data_offsets": [20, 8]}
    ),
    "offsets_beyond_data.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [3], "data_offsets": [8, 2**64 + 8]}
    ),
    "size_mismatch.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [4], "data_offsets": [8, 20]}
    ),
    "huge_shape.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [8, 20]}
    ),
    "overlapping_offsets.safetensors": lambda: st_bytes(
        {
            "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
            "b": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]},
        },
        bytes(20),
    ),
    "gap_between_tensors.safetensors": lambda: st_bytes(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]},
        },
        bytes(20),
    ),
    "trailing_garbage.safetensors": lambda: _two_tensors() + b"hidden payload",
    # Found by fuzzing (tests/unit/formats/test_fuzz.py):
    "unpaired_surrogate_name.safetensors": lambda: st_bytes(
        None, bytes(8), raw_header=b'{"\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    ),
    "unpaired_surrogate_metadata.safetensors": lambda: _two_tensors(__metadata__={"x": "\udc00"}),
    "long_shape_of_huge_dims.safetensors": lambda: _two_tensors(
        b={"dtype": "F32", "shape": [2**64 - 1] * 1_000, "data_offsets": [8, 20]}
    ),
    "huge_tensor_name.safetensors": lambda: _two_tensors(
        **{"b" * 10_000: {"dtype": "F32", "shape": [4], "data_offsets": [8, 20]}}
    ),
    "data_without_tensors.safetensors": lambda: st_bytes({}, b"hidden payload"),
}

# ---------------------------------------------------------------- GGUF

GGUF_STRING, GGUF_UINT32, GGUF_ARRAY = 8, 4, 9
F32, Q8_0 = 0, 8


def gguf_str(text: str | bytes) -> bytes:
    """A GGUF string: u64 length, then the bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf_kv_string(key: str, value: str) -> bytes:
    """A string metadata entry."""
    return gguf_str(key) + struct.pack("<I", GGUF_STRING) + gguf_str(value)


def gguf_kv_u32(key: str, value: int) -> bytes:
    """A uint32 metadata entry."""
    return gguf_str(key) + struct.pack("<II", GGUF_UINT32, value)


def gguf_tensor_info(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    """One tensor info: name, rank, dims (fastest first), type, offset into the data section."""
    info = gguf_str(name) + struct.pack("<I", len(dims))
    info += b"".join(struct.pack("<Q", d) for d in dims)
    return info + struct.pack("<IQ", ggml_type, offset)


def gguf_bytes(
    kvs: list[bytes],
    infos: list[bytes],
    data: bytes,
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    alignment: int = 32,
) -> bytes:
    """A GGUF file from raw parts; counts may lie."""
    head = magic + struct.pack("<I", version)
    head += struct.pack(
        "<QQ",
        len(infos) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    body = head + b"".join(kvs) + b"".join(infos)
    body += bytes(-len(body) % alignment)
    return body + data


def _q8_0_block() -> bytes:
    """One Q8_0 block of 32 weights: an f16 scale of 1/127 and 32 int8 values."""
    return struct.pack("<e", 1 / 127) + bytes(range(32))


def valid_gguf(**overrides: object) -> bytes:
    """A small valid llama-named GGUF: `norm` F32 [8] and `embd` Q8_0 [2 x 32]."""
    kvs = [gguf_kv_string("general.architecture", "llama"), gguf_kv_u32("general.alignment", 32)]
    norm = struct.pack("<8f", *range(8))
    embd = _q8_0_block() * 2
    infos = [
        gguf_tensor_info("norm.weight", [8], F32, 0),
        gguf_tensor_info("embd.weight", [32, 2], Q8_0, 32),
    ]
    data = norm + bytes(32 - len(norm)) + embd + bytes(-len(embd) % 32)
    parts: dict[str, object] = {"kvs": kvs, "infos": infos, "data": data}
    parts.update(overrides)
    kwargs = {k: v for k, v in parts.items() if k not in ("kvs", "infos", "data")}
    return gguf_bytes(parts["kvs"], parts["infos"], parts["data"], **kwargs)  # type: ignore[arg-type]


def _kvs_plus(extra: bytes) -> list[bytes]:
    return [gguf_kv_string("general.architecture", "llama"), extra]


_NORM_INFO = gguf_tensor_info("norm.weight", [8], F32, 0)
_NORM_DATA = struct.pack("<8f", *range(8))

GGUF: dict[str, Callable[[], bytes]] = {
    "empty.gguf": lambda: b"",
    "bad_magic.gguf": lambda: valid_gguf(magic=b"GGUG"),
    "version_1.gguf": lambda: valid_gguf(version=1),
    "truncated.gguf": lambda: valid_gguf()[:60],
    "truncated_data.gguf": lambda: valid_gguf()[:-40],
    "huge_tensor_count.gguf": lambda: valid_gguf(tensor_count=2**62),
    "huge_kv_count.gguf": lambda: valid_gguf(kv_count=2**62),
    "huge_string_length.gguf": lambda: gguf_bytes(
        [gguf_str("general.name") + struct.pack("<IQ", GGUF_STRING, 2**62) + b"x"], [], b""
    ),
    "huge_array_length.gguf": lambda: gguf_bytes(
        [gguf_str("tokenizer.ggml.token_type") + struct.pack("<IIQ", GGUF_ARRAY, 0, 2**63)],
        [],
        b"",
    ),
    "huge_string_array.gguf": lambda: gguf_bytes(
        [gguf_str("tokenizer.ggml.tokens") + struct.pack("<IIQ", GGUF_ARRAY, GGUF_STRING, 2**40)],
        [],
        b"",
    ),
    "nested_array.gguf": lambda: gguf_bytes(
        [gguf_str("x") + struct.pack("<IIQ", GGUF_ARRAY, GGUF_ARRAY, 1) + struct.pack("<IQ", 0, 0)],
        [],
        b"",
    ),
    "unknown_value_type.gguf": lambda: gguf_bytes(
        [gguf_str("general.name") + struct.pack("<I", 99) + bytes(8)], [], b""
    ),
    "key_not_utf8.gguf": lambda: gguf_bytes(
        [gguf_str(b"general.\xff") + struct.pack("<II", GGUF_UINT32, 1)], [], b""
    ),
    "duplicate_key.gguf": lambda: gguf_bytes(
        [gguf_kv_u32("general.alignment", 32), gguf_kv_u32("general.alignment", 64)], [], b""
    ),
    "bad_alignment.gguf": lambda: valid_gguf(
        kvs=_kvs_plus(gguf_kv_u32("general.alignment", 3)), alignment=3
    ),
    "unknown_tensor_type.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [32, 2], 77, 32)]
    ),
    "too_many_dims.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [32, 2, 1, 1, 1], Q8_0, 32)]
    ),
    "element_count_overflow.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [2**32, 2**32, 2**32], Q8_0, 32)]
    ),
    "row_not_multiple_of_block.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [16, 4], Q8_0, 32)]
    ),
    "duplicate_tensor_name.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("norm.weight", [32, 2], Q8_0, 32)]
    ),
    "misaligned_tensor_offset.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [32, 2], Q8_0, 40)]
    ),
    "overlapping_tensors.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [32, 2], Q8_0, 0)]
    ),
    "tensor_offset_beyond_eof.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("embd.weight", [32, 2], Q8_0, 2**40)]
    ),
    "trailing_garbage.gguf": lambda: valid_gguf() + bytes(64),
    # Found by fuzzing (tests/unit/formats/test_fuzz.py):
    "huge_tensor_name.gguf": lambda: valid_gguf(
        infos=[_NORM_INFO, gguf_tensor_info("n" * 5_000, [32, 2], Q8_0, 40)]
    ),
    "huge_metadata_key.gguf": lambda: gguf_bytes(
        [gguf_str("k" * 5_000) + struct.pack("<I", 99) + bytes(8)], [], b""
    ),
}

# ---------------------------------------------------------------- pickles

# A harmless stand-in for an exploit: GLOBAL of a module that does not exist, then REDUCE.
_REDUCE_CALL = b"\x80\x02cringfence_hostile_canary\nexplode\nq\x00)R."


def _torch_zip() -> bytes:
    """The layout torch.save writes: archive/data.pkl plus storages, in a zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in (
            ("archive/data.pkl", pickle.dumps({"w": [0.0, 1.0]}, protocol=2)),
            ("archive/byteorder", b"little"),
            ("archive/data/0", bytes(8)),
            ("archive/version", b"3\n"),
        ):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), payload)
    return buffer.getvalue()


PICKLES: dict[str, Callable[[], bytes]] = {
    "pickle_protocol2.bin": lambda: pickle.dumps({"model.weight": [0.0, 1.0, 2.0]}, protocol=2),
    "pickle_protocol0.bin": lambda: pickle.dumps({"model.weight": [0.0, 1.0, 2.0]}, protocol=0),
    "pickle_protocol4.ckpt": lambda: pickle.dumps({"state_dict": {"w": "x" * 200}}, protocol=4),
    "pickle_reduce_call.bin": lambda: _REDUCE_CALL,
    "pickle_named_safetensors.safetensors": lambda: _REDUCE_CALL,
    "torch_zip_pickle.pt": _torch_zip,
}

EXPECTED: dict[str, str] = {
    **dict.fromkeys(SAFETENSORS, "MalformedFile"),
    **dict.fromkeys(GGUF, "MalformedFile"),
    **dict.fromkeys(PICKLES, "UnsafeFormat"),
    "version_1.gguf": "UnsupportedFormat",
}


def build_all() -> dict[str, bytes]:
    """Every hostile file's name and bytes."""
    return {name: make() for name, make in {**SAFETENSORS, **GGUF, **PICKLES}.items()}


def main() -> None:
    """Write every file next to this script."""
    for name, payload in build_all().items():
        (HERE / name).write_bytes(payload)
    print(f"wrote {len(EXPECTED)} hostile files to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()

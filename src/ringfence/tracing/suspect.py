"""A suspect copy as a mapping of tensor names to float32 arrays, whatever its format.

Accepted: safetensors (one file or shards), GGUF of any type the `gguf` library dequantises,
Hugging Face-layout directories, and PyTorch checkpoints (read in a fenced child process, see
`pytorch_safe`). Headers are validated by ringfence's strict readers; tensors are decoded only
when asked for, so a trace holds one tensor at a time besides the original's.

    with open_suspect([Path("leak/")]) as suspect:
        suspect.names(); suspect.load("model.layers.0.mlp.up_proj.weight")
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ringfence.errors import InvalidInput, MalformedFile, UnsupportedFormat
from ringfence.formats import gguf as gguf_format
from ringfence.formats import safetensors as st_format
from ringfence.formats.index import TensorInfo, sniff_format

F32 = npt.NDArray[np.float32]

#: safetensors dtypes decoded to float32 (8-bit floats and integers are not weights we trace)
_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class SuspectFile:
    """One file of a suspect copy: its path, size, sha256 and format."""

    path: Path
    size: int
    sha256: str
    format: str


@dataclass(frozen=True)
class _Entry:
    file: Path
    format: str
    info: TensorInfo
    gguf_index: int = -1


@dataclass
class Suspect:
    """The tensors of a suspect copy, decoded lazily to float32 (numpy row-major shapes)."""

    files: list[SuspectFile]
    entries: dict[str, _Entry] = field(default_factory=dict)
    gguf_metadata: dict[str, Any] = field(default_factory=dict)
    _readers: dict[Path, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Tensor names in file order."""
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape without decoding it."""
        return self.entries[name].info.shape

    @property
    def is_gguf(self) -> bool:
        """Whether the tensors came from a GGUF file (llama.cpp names and rotary order)."""
        return any(e.format == "gguf" for e in self.entries.values())

    def load(self, name: str) -> F32:
        """Decode one tensor to float32."""
        entry = self.entries[name]
        if entry.format == "gguf":
            return self._load_gguf(entry)
        info = entry.info
        with entry.file.open("rb") as fh:
            fh.seek(info.begin)
            raw = fh.read(info.nbytes)
        if len(raw) != info.nbytes:
            raise MalformedFile(f"{entry.file.name}: tensor {name!r} is cut short")
        if info.dtype == "BF16":
            words = np.frombuffer(raw, dtype="<u2")
            values = st_format.bf16_to_f32(words)
        else:
            values = np.frombuffer(raw, dtype=_ST_DTYPES[info.dtype]).astype(np.float32)
        return np.asarray(values, dtype=np.float32).reshape(info.shape)

    def grid(self, name: str) -> F32 | None:
        """The width of each element's quantisation bin, for GGUF Q4_0/Q4_1/Q8_0 tensors.

        Elements at Q4_0's clipped top level (q = 15, where values up to 8·d land) get a
        wider bin. None for any other type.
        """
        entry = self.entries[name]
        if entry.format != "gguf":
            return None
        reader = self._readers.get(entry.file)
        if reader is None:
            reader = self._readers[entry.file] = gguf_format.checked_reader(entry.file)
        tensor = reader.tensors[entry.gguf_index]
        size = _GRID_BLOCKS.get(tensor.tensor_type.name)
        if size is None:
            return None
        blocks = _blocks(np.asarray(tensor.data, dtype=np.uint8), size)
        width = np.abs(_half(blocks, 0))
        out = np.repeat(width, 32, axis=1)
        if tensor.tensor_type.name == "Q4_0":
            top = _nibbles(blocks, 2) == 15
            out = np.where(top, np.float32(3) * out, out)
        return np.asarray(out, dtype=np.float32).reshape(entry.info.shape)

    def _load_gguf(self, entry: _Entry) -> F32:
        from gguf.quants import dequantize

        reader = self._readers.get(entry.file)
        if reader is None:
            reader = self._readers[entry.file] = gguf_format.checked_reader(entry.file)
        tensor = reader.tensors[entry.gguf_index]
        fast = _DEQUANTISE.get(tensor.tensor_type.name)
        if fast is not None:
            return fast(np.asarray(tensor.data, dtype=np.uint8)).reshape(entry.info.shape)
        try:
            values = dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError as exc:
            raise UnsupportedFormat(
                f"tensor {tensor.name!r} is {tensor.tensor_type.name}, which cannot be dequantised",
                hint="convert the file to another quantisation or to safetensors",
            ) from exc
        return np.asarray(values, dtype=np.float32).reshape(entry.info.shape)


# --- llama.cpp's commonest quantisations, dequantised in one vectorised pass ----------------
# The same float32 arithmetic as `gguf.quants` (d·q, d·q + m), which goes 16 rows at a time:
# whole tensors at once, into preallocated arrays.


def _blocks(raw: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    if raw.size % size:
        raise MalformedFile(f"quantised tensor of {raw.size} bytes is not in {size}-byte blocks")
    return raw.reshape(-1, size)


def _half(blocks: npt.NDArray[np.uint8], at: int) -> F32:
    return blocks[:, at : at + 2].copy().view("<f2").astype(np.float32)


def _nibbles(blocks: npt.NDArray[np.uint8], at: int) -> F32:
    # ggml's Q4 layout: element j is the low nibble of byte j, element j + 16 the high one
    qs = blocks[:, at:]
    q = np.empty((blocks.shape[0], 32), dtype=np.uint8)
    np.bitwise_and(qs, np.uint8(15), out=q[:, :16])
    np.right_shift(qs, np.uint8(4), out=q[:, 16:])
    return q.astype(np.float32)


def _q4_0(raw: npt.NDArray[np.uint8]) -> F32:
    blocks = _blocks(raw, 18)
    q = _nibbles(blocks, 2)
    q -= np.float32(8)
    q *= _half(blocks, 0)
    return q.reshape(-1)


def _q4_1(raw: npt.NDArray[np.uint8]) -> F32:
    blocks = _blocks(raw, 20)
    q = _nibbles(blocks, 4)
    q *= _half(blocks, 0)
    q += _half(blocks, 2)
    return q.reshape(-1)


def _q8_0(raw: npt.NDArray[np.uint8]) -> F32:
    blocks = _blocks(raw, 34)
    q = blocks[:, 2:].view(np.int8).astype(np.float32)
    q *= _half(blocks, 0)
    return q.reshape(-1)


_DEQUANTISE = {"Q4_0": _q4_0, "Q4_1": _q4_1, "Q8_0": _q8_0}
#: block sizes in bytes of the types whose quantisation grid `Suspect.grid` knows
_GRID_BLOCKS = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weight_files(paths: Sequence[Path]) -> list[Path]:
    """The weights files named by `paths` (files, or directories searched recursively)."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InvalidInput(f"{path} does not exist", hint="name a weights file or directory")
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and sniff_format(child) in ("safetensors", "gguf", "pickle"):
                    found.append(child)
        else:
            found.append(path)
    if not found:
        raise InvalidInput(
            "no weights files found among " + ", ".join(str(p) for p in paths),
            hint="give safetensors, GGUF or PyTorch checkpoint files, or a directory holding them",
        )
    return found


def _add_safetensors(suspect: Suspect, path: Path) -> None:
    index = st_format.read_index(path)
    for info in index.tensors:
        if info.dtype in _ST_DTYPES or info.dtype == "BF16":
            suspect.entries.setdefault(info.name, _Entry(path, "safetensors", info))


def _add_gguf(suspect: Suspect, path: Path) -> None:
    reader = gguf_format.checked_reader(path)
    index = gguf_format.index_of(path, reader)
    suspect.gguf_metadata.update(index.metadata)
    suspect._readers[path] = reader  # opened once, before any worker thread reads tensors
    for i, info in enumerate(index.tensors):
        suspect.entries.setdefault(info.name, _Entry(path, "gguf", info, i))


@contextmanager
def open_suspect(paths: Sequence[Path], *, hash_files: bool = True) -> Iterator[Suspect]:
    """Open a suspect copy (files or directories); PyTorch checkpoints are converted safely.

    Raises `InvalidInput` (and its subclasses) for anything that is not a readable weights file.
    """
    from ringfence.tracing.pytorch_safe import read_checkpoint

    files = weight_files(paths)
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-trace-"))
    try:
        suspect = Suspect(files=[])
        for path in files:
            kind = sniff_format(path)
            digest = file_sha256(path) if hash_files else ""
            suspect.files.append(SuspectFile(path, path.stat().st_size, digest, kind))
            if kind == "safetensors":
                _add_safetensors(suspect, path)
            elif kind == "gguf":
                _add_gguf(suspect, path)
            elif kind == "pickle":
                _add_safetensors(suspect, read_checkpoint(path, workdir))
            else:
                raise UnsupportedFormat(
                    f"{path.name} is not a weights file ringfence can trace",
                    hint="give safetensors, GGUF or PyTorch checkpoint files",
                )
        if not suspect.entries:
            raise InvalidInput("the suspect files hold no floating-point tensors")
        yield suspect
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

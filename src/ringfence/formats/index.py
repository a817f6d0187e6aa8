"""The tensor index every weights format is read into, and dispatch by file content."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a weights file.

    `dtype` is the format's own type name ("BF16", "F32" for safetensors; "Q4_1", "Q8_0",
    "F32" for GGUF). `shape` is row-major (numpy order) for every format. `begin`/`end` are
    absolute byte offsets in the file.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Number of data bytes."""
        return self.end - self.begin


@dataclass(frozen=True)
class WeightsIndex:
    """Every tensor of one weights file, in file order, plus the format's metadata."""

    format: str  # "safetensors" | "gguf"
    data_offset: int  # where tensor data starts (end of header / start of GGUF data section)
    file_size: int
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        """Total number of elements over all tensors."""
        return sum(t.numel for t in self.tensors)

    def by_name(self) -> dict[str, TensorInfo]:
        """Tensors keyed by name."""
        return {t.name: t for t in self.tensors}


#: how much of a name from the file an error message shows (a hostile name may be megabytes)
QUOTED_CHARS = 60


def quoted(name: object) -> str:
    """A name from an untrusted file as an error message shows it: quoted, cut short."""
    text = str(name)
    if len(text) <= QUOTED_CHARS:
        return repr(text)
    return f"{text[:QUOTED_CHARS]!r}... ({len(text)} characters)"


WEIGHT_SUFFIXES = (".safetensors", ".gguf")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def sniff_format(path: Path) -> str:
    """What a file is, from its content first and its name second.

    One of "safetensors", "gguf", "pickle", "json", "text", "other".
    """
    from ringfence.formats.pickles import looks_like_pickle

    with path.open("rb") as fh:
        head = fh.read(16)
    if head[:4] == b"GGUF" or path.suffix.lower() == ".gguf":
        return "gguf"
    if looks_like_pickle(path) or path.suffix.lower() in PICKLE_SUFFIXES:
        return "pickle"
    if path.suffix.lower() == ".safetensors":
        return "safetensors"
    if path.suffix.lower() == ".json":
        return "json"
    if path.suffix.lower() in (".md", ".txt", ".model", ".jinja", ".py") or path.name in (
        "LICENSE",
        "README",
        "NOTICE",
        "merges.txt",
        "vocab.txt",
    ):
        return "text"
    return "other"


def read_index(path: Path) -> WeightsIndex:
    """Validate a weights file strictly and return its tensor index.

    Raises `MalformedFile` for a broken or hostile file, `UnsafeFormat` for pickles and
    `UnsupportedFormat` for anything else.
    """
    from ringfence.errors import UnsupportedFormat
    from ringfence.formats import gguf as gguf_format
    from ringfence.formats import pickles
    from ringfence.formats import safetensors as st_format

    kind = sniff_format(path)
    if kind == "safetensors":
        return st_format.read_index(path)
    if kind == "gguf":
        return gguf_format.read_index(path)
    if kind == "pickle":
        pickles.refuse(path)
    raise UnsupportedFormat(
        f"{path.name} is not a weights file ringfence reads",
        hint="publish safetensors or GGUF weights",
    )

"""Pickles (`pytorch_model.bin`, `.pt`, `.ckpt`): recognised so they can be refused, never loaded.

Loading a pickle runs whatever code its author put in it. We only ever *parse* opcodes with
`pickletools.genops`, which reads the stream without executing it.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import NoReturn

from ringfence.errors import UnsafeFormat

#: how much of the file is parsed for opcodes
_PREFIX_BYTES = 64 * 1024
#: opcodes parsed before we are convinced; few texts survive this many
_OPCODES_TO_CHECK = 8
#: what protocol 0/1 pickles (no PROTO opcode) start with: MARK, EMPTY_DICT/LIST/TUPLE, GLOBAL
_OLD_PROTOCOL_STARTS = frozenset(b"(}])c")


def _parses_as_pickle(head: bytes) -> bool:
    """Whether the first opcodes of `head` form a plausible pickle stream.

    A PROTO 2..5 opcode followed by two more valid opcodes is enough; old protocols need several
    valid opcodes in a row, since a text file can start with "(" or "c". A stream that runs out
    of `head` inside a long argument counts as valid so far.
    """
    if not head:
        return False
    modern = head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5
    if not modern and head[0] not in _OLD_PROTOCOL_STARTS:
        return False
    needed = 3 if modern else _OPCODES_TO_CHECK
    parsed = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(head):
            parsed += 1
            if opcode.name == "STOP" or parsed >= needed:
                return True
    except ValueError as exc:
        # pickletools says "expected N bytes ..., but only M remain" when `head` is too short.
        return parsed >= (1 if modern else 2) and "remain" in str(exc)
    except Exception:  # genops raises assorted other errors on bytes that are not a pickle
        return False
    return False


def _zip_holds_pickle(path: Path) -> bool:
    """torch.save's zip format: `<name>/data.pkl` (and friends) inside a zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def looks_like_pickle(path: Path) -> bool:
    """Whether a file is a pickle stream or a torch zip holding one (content, not name)."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(_PREFIX_BYTES)
    if head[:4] == b"PK\x03\x04":
        return _zip_holds_pickle(path)
    return _parses_as_pickle(head)


def refuse(path: Path) -> NoReturn:
    """Refuse a pickle with one line saying how to publish it safely instead."""
    name = Path(path).name
    raise UnsafeFormat(
        f"{name} is a pickle, which can run code when loaded",
        hint=(
            "convert it to safetensors (e.g. `safetensors.torch.save_file(torch.load(f, "
            "weights_only=True), 'model.safetensors')`) and publish that"
        ),
    )

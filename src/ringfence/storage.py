"""Blob storage behind one interface: content-addressed by sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from ringfence.datadir import private_dir
from ringfence.errors import IntegrityError, NotFound

CHUNK = 4 * 1024 * 1024


class BlobStore(Protocol):
    """Where release bytes live; keys are sha256 hex digests of the content."""

    def put_file(self, source: Path) -> tuple[str, int]:
        """Store a file's bytes; return (sha256, size). Storing the same bytes twice is free."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored."""
        ...

    def size(self, sha256: str) -> int:
        """Size of a stored blob in bytes."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """A readable, seekable binary file of the blob."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A path on this machine holding the blob, when the backend has one (memory maps)."""
        ...


class LocalBlobStore:
    """Blobs in a directory on this machine. Fine for one server; use S3 when you scale out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFound(f"no blob {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy and hash in one pass into a temporary file, then rename into place."""
        incoming = private_dir(self.root / "incoming")
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=incoming)  # 0600, whatever the umask
        tmp = Path(tmp_name)
        try:
            with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                while n := src.readinto(buf):
                    digest.update(view[:n])
                    dst.write(view[:n])
                    size += n
            sha = digest.hexdigest()
            final = self._path(sha)
            private_dir(final.parent)
            if final.exists():
                tmp.unlink()
            else:
                os.chmod(tmp, 0o400)  # content-addressed: never rewritten, read by the owner
                os.replace(tmp, final)
            return sha, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def size(self, sha256: str) -> int:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} is missing from the store") from None

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self._path(sha256).open("rb")
        except FileNotFoundError:
            raise IntegrityError(
                f"blob {sha256} is recorded but missing from the store",
                hint="restore the blob directory from backup",
            ) from None

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)

    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream [start, end) of a blob in chunks."""
        with self.open(sha256) as fh:
            fh.seek(start)
            remaining = (end if end is not None else self.size(sha256)) - start
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

"""The server's secret store: one master key on disk, purpose-bound keys derived from it.

Keys never leave the server and are never part of a release. Derivation is HMAC-SHA256
(RFC 2104) of a purpose label under the master key, so each use (links, fingerprints of a
release, sessions) has its own key and the master key is never used directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets as pysecrets
import tempfile
from pathlib import Path
from typing import Protocol

from ringfence.datadir import private_dir


class SecretStore(Protocol):
    """Gives purpose-bound keys; the same purpose always gives the same key."""

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for `purpose` (e.g. "fingerprint:release:42")."""
        ...


class LocalSecretStore:
    """A master key in a 0600 file under the data dir, created on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._master: bytes | None = None

    def _load(self) -> bytes:
        if self._master is None:
            path = self.directory / "master.key"
            if not path.exists():
                self._create(path)
            self._master = bytes.fromhex(path.read_text().strip())
        return self._master

    def _create(self, path: Path) -> None:
        # Several server processes may start at once: the key is written whole to a private
        # temporary file and linked into place, which fails if another process won; nobody
        # ever reads a half-written key or overwrites the one already in use.
        private_dir(self.directory)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".master.key.")  # 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(pysecrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self._load(), purpose.encode(), hashlib.sha256).digest()

"""The server's secret store: one master key on disk, purpose-bound keys derived from it.

Keys never leave the server and are never part of a release. Derivation is HMAC-SHA256
(RFC 2104) of a purpose label under the master key, so each use (links, fingerprints of a
release, sessions) has its own key and the master key is never used directly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as pysecrets
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
                private_dir(self.directory)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(pysecrets.token_hex(32))
            self._master = bytes.fromhex(path.read_text().strip())
        return self._master

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self._load(), purpose.encode(), hashlib.sha256).digest()

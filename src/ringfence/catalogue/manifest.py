"""Release manifests: every file's hash, in a canonical JSON whose own sha256 names the release."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a release."""

    path: str
    size: int
    sha256: str


def canonical_manifest(model: str, version: str, entries: list[ManifestEntry]) -> bytes:
    """The manifest as canonical JSON bytes (sorted keys, no spaces, files sorted by path)."""
    doc: dict[str, Any] = {
        "model": model,
        "version": version,
        "files": [
            {"path": e.path, "size": e.size, "sha256": e.sha256}
            for e in sorted(entries, key=lambda e: e.path)
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def manifest_sha256(model: str, version: str, entries: list[ManifestEntry]) -> str:
    """sha256 of the canonical manifest."""
    return hashlib.sha256(canonical_manifest(model, version, entries)).hexdigest()

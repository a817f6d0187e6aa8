"""Signed per-recipient manifests in the OpenSSF model-signing format.

A recipient's manifest lists the sha256 of every file exactly as they receive it. It is an
in-toto statement with the `https://model_signing/signature/v1.0` predicate (resources sorted
by name, subject digest = sha256 over the concatenated raw digests), wrapped in a DSSE
envelope signed with ECDSA P-256 / SHA-256 over the DSSE pre-authentication encoding, in a
Sigstore bundle (v0.3) whose key hint is the sha256 of the public key's PEM. That is the
layout `model_signing verify key --signature model.sig --public_key lab.pem DIR` checks.

The lab's signing key is derived from the server's secret store (an HMAC-derived scalar on
P-256), so it needs no key file of its own and never leaves the server; the public key is
published at `/api/v1/distribution/signing-key.pem` and by `ringfence manifest key`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ringfence.errors import IntegrityError, InvalidInput
from ringfence.secrets import SecretStore

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: the file a download writes its manifest to, next to the model's files
SIGNATURE_NAME = "model.sig"
#: paths a verifier skips: VCS files, client caches and the signature itself
IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore", ".cache", SIGNATURE_NAME)
#: order of the P-256 group (SEC 2, §2.4.2)
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HASH_CHUNK = 4 * 1024 * 1024


def signing_key(secrets: SecretStore) -> ec.EllipticCurvePrivateKey:
    """The lab's manifest key: scalar = 1 + (HMAC-derived 256 bits mod (n - 1))."""
    seed = int.from_bytes(
        secrets.derive("distribution:manifest-signing-key")
        + secrets.derive("distribution:manifest-signing-key:2"),
        "big",
    )
    return ec.derive_private_key(1 + seed % (_P256_ORDER - 1), ec.SECP256R1())


def public_key_pem(secrets: SecretStore) -> bytes:
    """The lab's manifest public key as PEM (SubjectPublicKeyInfo)."""
    return (
        signing_key(secrets)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def root_digest(files: dict[str, str]) -> str:
    """sha256 over the files' raw digests in path order (the statement's subject digest)."""
    hasher = hashlib.sha256()
    for path in sorted(files):
        hasher.update(bytes.fromhex(files[path]))
    return hasher.hexdigest()


def statement(name: str, files: dict[str, str]) -> dict[str, Any]:
    """The in-toto statement naming every file's sha256."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root_digest(files)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": list(IGNORE_PATHS),
            },
            "resources": [
                {"name": path, "algorithm": "sha256", "digest": files[path]}
                for path in sorted(files)
            ],
        },
    }


def _pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (secure-systems-lab/dsse, protocol.md)."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


def _key_hint(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem).hexdigest()


def sign(secrets: SecretStore, name: str, files: dict[str, str]) -> str:
    """The Sigstore bundle (JSON text) signing the manifest of `files` under `name`."""
    key = signing_key(secrets)
    payload = json.dumps(statement(name, files), sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(_pae(payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": _key_hint(public_key_pem(secrets))},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":"))


@dataclass(frozen=True)
class SignedManifest:
    """What a verified bundle says: the model's name and every file's sha256."""

    name: str
    files: dict[str, str]
    root_sha256: str


def verify_bundle(bundle_text: str, public_pem: bytes) -> SignedManifest:
    """Check a bundle's signature under `public_pem` and its internal consistency."""
    try:
        bundle = json.loads(bundle_text)
        envelope = bundle["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"])
        sig = base64.b64decode(envelope["signatures"][0]["sig"])
        payload_type = envelope["payloadType"]
        public_key = serialization.load_pem_public_key(public_pem)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidInput(f"the manifest signature is not a readable bundle: {exc}") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InvalidInput("the public key is not an elliptic-curve key")
    if payload_type != PAYLOAD_TYPE:
        raise IntegrityError(f"the manifest's payload type is {payload_type!r}, not in-toto")
    try:
        public_key.verify(sig, _pae(payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise IntegrityError(
            "the manifest's signature does not verify under the lab's public key",
            hint="the manifest was altered, or it was signed by another server",
        ) from None
    doc = json.loads(payload)
    files = {r["name"]: r["digest"] for r in doc["predicate"]["resources"]}
    subject = doc["subject"][0]
    if subject["digest"]["sha256"] != root_digest(files):
        raise IntegrityError("the manifest's root digest does not match its files")
    return SignedManifest(subject["name"], files, subject["digest"]["sha256"])


def sha256_of(chunks: Iterable[bytes]) -> tuple[str, int]:
    """sha256 and length of a stream of chunks."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def sha256_file(path: Path) -> str:
    """sha256 of a file on disk, read in chunks."""
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass(frozen=True)
class DirectoryCheck:
    """Result of checking a downloaded directory against its manifest."""

    ok_files: list[str]
    mismatched: list[str]
    missing: list[str]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        """Every signed file is present with its signed bytes, and nothing else is there."""
        return not (self.mismatched or self.missing or self.unexpected)


def _ignored(rel: str) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in IGNORE_PATHS)


def check_directory(directory: Path, manifest: SignedManifest) -> DirectoryCheck:
    """Hash every file under `directory` and compare with the signed manifest."""
    ok, bad, missing = [], [], []
    for path, digest in sorted(manifest.files.items()):
        target = directory / path
        if not target.is_file():
            missing.append(path)
        elif sha256_file(target) == digest:
            ok.append(path)
        else:
            bad.append(path)
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    unexpected = sorted(p for p in present - manifest.files.keys() if not _ignored(p))
    return DirectoryCheck(ok, bad, missing, unexpected)

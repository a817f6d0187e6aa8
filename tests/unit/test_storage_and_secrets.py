"""The local blob store and the secret store."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from ringfence.errors import IntegrityError, NotFound
from ringfence.secrets import LocalSecretStore
from ringfence.storage import LocalBlobStore


def test_blobs_are_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 10_000_003)
    sha, size = store.put_file(source)
    assert sha == hashlib.sha256(source.read_bytes()).hexdigest() and size == 10_000_003
    again, _ = store.put_file(source)
    assert again == sha
    assert list((tmp_path / "blobs" / "incoming").iterdir()) == []
    assert b"".join(store.iter_bytes(sha, 9_999_999, 10_000_003)) == b"xxxx"
    assert store.size(sha) == size


def test_blob_names_are_checked_and_missing_blobs_reported(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(NotFound):
        store.exists("../../etc/passwd")
    with pytest.raises(IntegrityError):
        store.open("0" * 64)


def test_secret_store_derives_stable_distinct_keys_from_a_private_file(tmp_path: Path) -> None:
    first = LocalSecretStore(tmp_path / "secrets")
    key = first.derive("fingerprint:release:1")
    assert len(key) == 32
    assert first.derive("fingerprint:release:2") != key
    assert LocalSecretStore(tmp_path / "secrets").derive("fingerprint:release:1") == key
    mode = (tmp_path / "secrets" / "master.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert LocalSecretStore(tmp_path / "other").derive("fingerprint:release:1") != key


def test_processes_starting_together_agree_on_one_master_key(tmp_path: Path) -> None:
    # Server workers start at once and each creates the key on first use: one wins the link,
    # the others read its (whole) key; no temporary file is left behind.
    from concurrent.futures import ThreadPoolExecutor

    directory = tmp_path / "secrets"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: LocalSecretStore(directory).derive("x"), range(32)))
    assert len(keys) == 1
    assert [p.name for p in directory.iterdir()] == ["master.key"]
    assert stat.S_IMODE((directory / "master.key").stat().st_mode) == 0o600

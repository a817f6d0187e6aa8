"""Attacks on a running ringfence and the regression test each one earned (security issue #10).

Each test is named after what it attacks; each failed on the code before the fix.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.settings import Settings
from ringfence.wiring import build
from tests.conftest import TINY_CODE_ENV, CliRunner


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask of a typical login shell (0o022), restored afterwards."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _loose(root: Path) -> list[str]:
    """Every path under `root` (itself included) with a group or other permission bit."""
    paths = [root, *root.rglob("*")]
    return [
        f"{p.relative_to(root.parent)} {stat.S_IMODE(p.lstat().st_mode):o}"
        for p in paths
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]


def test_data_dir_is_owner_only(
    cli: CliRunner,
    home: Path,
    tiny_model: Path,
    loose_umask: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in TINY_CODE_ENV.items():
        monkeypatch.setenv(key, value)
    assert cli("init", "--org", "lab").code == 0
    published = cli("publish", str(tiny_model), "--model", "tiny", "--version", "1.0")
    assert published.code == 0, published.err
    # The database in WAL mode keeps its -wal/-shm files; all must be there to be checked.
    assert (home / "ringfence.db").exists() and (home / "blobs" / "sha256").is_dir()
    assert _loose(home) == []


def test_data_dir_is_owner_only_without_the_cli_umask(home: Path, loose_umask: None) -> None:
    # A library caller (a test, a notebook) keeps its own umask: creation itself is owner-only.
    services = build(Settings(home=home))
    services.prepare()
    services.secrets.derive("probe")
    source = home.parent / "blob.bin"
    source.write_bytes(b"weights")
    sha, _ = services.blobs.put_file(source)
    with services.engine.connect():
        pass
    assert stat.S_IMODE(services.blobs.local_path(sha).stat().st_mode) == 0o400  # type: ignore[union-attr]
    assert _loose(home) == []


def test_data_dir_made_by_an_older_version_is_tightened(
    home: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    old = build(Settings(home=home))
    old.prepare()
    source = home.parent / "blob.bin"
    source.write_bytes(b"weights")
    sha, _ = old.blobs.put_file(source)
    old.secrets.derive("probe")
    old.engine.dispose()
    # What an older version left behind: 0755 folders, 0644 files, 0444 blobs.
    for path in [home, *home.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(home / "blobs" / "sha256" / sha[:2] / sha[2:4] / sha, 0o444)
    assert _loose(home) != []
    with caplog.at_level(logging.WARNING, logger="ringfence.datadir"):
        build(Settings(home=home)).prepare()
    assert _loose(home) == []
    assert "owner-only" in caplog.text
    blob = home / "blobs" / "sha256" / sha[:2] / sha[2:4] / sha
    assert stat.S_IMODE(blob.stat().st_mode) == 0o400

"""The data dir is its owner's alone: folders 0700, files 0600 (blobs 0400).

The data dir holds the master key, the database (accounts, grants, password hashes) and the
release bytes before fingerprinting: anyone else on the machine who can read it can hand out
unfingerprinted weights or forge links. Every writer creates its files owner-only at the
point of creation (not after, so there is no window), the server and CLI run under a
0o077 umask as a second line, and `tighten` repairs a data dir made by an older version.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ringfence.datadir")

#: the process umask the server and the CLI run under: nothing for group or others
OWNER_ONLY_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> None:
    """Run this process under OWNER_ONLY_UMASK (called where the server and the CLI start)."""
    os.umask(OWNER_ONLY_UMASK)


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents 0700 (existing folders are left as they are)."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another writer made it first; it went through here too
        # mkdir's mode is filtered by the umask, which may be looser than ours: say it again.
        os.chmod(folder, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 unless it exists (e.g. before SQLite opens it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return path


def _tighten_one(path: Path, changed: list[Path]) -> None:
    mode = stat.S_IMODE(path.lstat().st_mode)
    if mode & 0o077:
        # Owner bits stay (a blob stays read-only), group and other bits go.
        os.chmod(path, DIR_MODE if path.is_dir() else mode & 0o700)
        changed.append(path)


def tighten(home: Path) -> list[Path]:
    """Remove group/other permissions from the data dir and what ringfence keeps in it.

    Walks only what ringfence owns there (the SQLite files, `blobs/`, `secrets/`); returns
    the paths it changed, and warns in the log when there were any.
    """
    if not home.is_dir():
        return []
    changed: list[Path] = []
    _tighten_one(home, changed)
    owned = [p for p in home.iterdir() if p.name.startswith("ringfence.db")]
    owned += [home / "blobs", home / "secrets"]
    for top in owned:
        if top.is_symlink() or not top.exists():
            continue  # a link may point at storage another tool manages: not ours to change
        _tighten_one(top, changed)
        if top.is_dir():
            for root, dirs, files in os.walk(top):
                for name in (*dirs, *files):
                    entry = Path(root) / name
                    if not entry.is_symlink():
                        _tighten_one(entry, changed)
    if changed:
        log.warning(
            "the data dir %s was readable by others: made %d paths owner-only (e.g. %s)",
            home,
            len(changed),
            changed[0],
        )
    return changed

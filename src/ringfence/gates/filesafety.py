"""File safety: every artifact through the format layer; a pickle anywhere fails the gate.

Weights are validated as strictly as at publish; zip containers (torch's format, archives)
are opened member by member, nested ones too, since a pickle inside a zip runs code as
surely as a bare one. picklescan gives a second opinion when it is installed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import IO

from ringfence.errors import RingfenceError
from ringfence.formats.index import read_index, sniff_format
from ringfence.formats.pickles import _parses_as_pickle
from ringfence.gates.outcome import Outcome

#: how deep zips inside zips are opened
_MAX_DEPTH = 3
#: members read into memory at most this large to look inside (larger ones: by name only)
_MAX_MEMBER = 64 * 1024 * 1024


def _zip_findings(data: IO[bytes], where: str, depth: int = 0) -> list[str]:
    """Pickles inside a zip, by member name or content, recursing into nested zips."""
    findings: list[str] = []
    try:
        archive = zipfile.ZipFile(data)
    except (zipfile.BadZipFile, OSError, ValueError):
        return [f"{where} looks like a zip but cannot be opened"]
    with archive:
        for info in archive.infolist():
            name = f"{where}!{info.filename}"
            if info.filename.endswith((".pkl", ".pickle")):
                findings.append(f"{name} is a pickle")
                continue
            if info.is_dir() or info.file_size > _MAX_MEMBER:
                continue
            with archive.open(info) as member:
                head = member.read(_MAX_MEMBER)
            if head[:4] == b"PK\x03\x04":
                if depth >= _MAX_DEPTH:
                    findings.append(f"{name} nests zips too deeply to inspect")
                else:
                    findings += _zip_findings(io.BytesIO(head), name, depth + 1)
            elif _parses_as_pickle(head[: 64 * 1024]):
                findings.append(f"{name} is a pickle")
    return findings


def _picklescan(path: Path, where: str) -> list[str]:
    """picklescan's verdict on one file, when it is installed (a second opinion)."""
    try:
        from picklescan.scanner import scan_file_path
    except ImportError:
        return []
    result = scan_file_path(str(path))
    if result.infected_files or result.issues_count:
        return [f"{where}: picklescan found {result.issues_count} dangerous import(s)"]
    return []


def scan_file(path: Path, where: str) -> tuple[str, list[str]]:
    """A file's format and what is unsafe about it (empty when nothing is)."""
    kind = sniff_format(path)
    findings: list[str] = []
    if kind == "pickle":
        findings.append(f"{where} is a pickle, which runs code when loaded")
    elif kind in ("safetensors", "gguf"):
        try:
            read_index(path)
        except RingfenceError as exc:
            findings.append(f"{where}: {exc.message}")
    else:
        with path.open("rb") as fh:
            if fh.read(4) == b"PK\x03\x04":
                fh.seek(0)
                kind = "zip"
                findings += _zip_findings(fh, where)
    if kind not in ("safetensors", "gguf", "json", "text"):
        # What parsed strictly as a data format cannot be a pickle; picklescan would only
        # log that it is not one. Everything else gets its second opinion.
        findings += _picklescan(path, where)
    return kind, findings


def run(files: dict[str, Path], *, fail_cap: str) -> Outcome:
    """The file-safety gate over a release's files (path in the release -> file on disk)."""
    formats: dict[str, str] = {}
    findings: list[str] = []
    for where, path in sorted(files.items()):
        kind, found = scan_file(path, where)
        formats[where] = kind
        findings += found
    try:
        import picklescan  # noqa: F401

        second = "picklescan"
    except ImportError:
        second = "none installed"
    figures = {"files": len(files), "unsafe": len(findings), "second_opinion": second}
    if findings:
        reason = f"{len(findings)} unsafe: " + "; ".join(findings[:5])
        return Outcome("file_safety", False, fail_cap, figures, reason, {"findings": findings})
    reason = f"all {len(files)} files parse strictly; no pickle anywhere"
    return Outcome("file_safety", True, "public", figures, reason, {"formats": formats})

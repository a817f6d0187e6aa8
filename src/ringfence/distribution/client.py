"""The download client behind `ringfence download` and `ringfence verify`.

Fetches one recipient's copy file by file in parallel, resumable at byte level: each file
grows in `DIR/.ringfence-partial/PATH.part` next to the ETag it was started with, a restart
asks for `Range: bytes=N-` with `If-Range: ETAG` (a changed copy comes back whole), and
transient failures (connection refused while the server restarts, resets, timeouts) are
retried with backoff. At the end the signed manifest is fetched, written to `DIR/model.sig`
and every file is checked against it. HTTP sessions, error answers and a server that does not
answer are handled as for every client command, in ringfence.client.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from ringfence.client import error_from, session, transport_errors
from ringfence.distribution import manifests
from ringfence.errors import IntegrityError, InvalidInput, NotFound

PARTIAL_DIR = ".ringfence-partial"
CHUNK = 1024 * 1024
RETRIES = 12
#: A refused connection means no server is listening: a restart takes seconds, not the half
#: minute that RETRIES' backoff adds up to, so a dead server is reported after about 2 s.
CONNECT_RETRIES = 4
MANIFEST_WAIT_S = 60.0

#: called with (path, bytes just written, file size)
Progress = Callable[[str, int, int], None]


@dataclass
class DownloadReport:
    """What a download did."""

    release: str
    directory: Path
    files: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    verified: bool | None = None
    check: manifests.DirectoryCheck | None = None


def _safe_path(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise IntegrityError(f"the server listed an unsafe file path {path!r}")
    return rel


def resolve_link(
    source: str, *, server: str | None, token: str | None, client: httpx.Client
) -> str:
    """The link page URL for `source`: a link already, or MODEL@VERSION via the API."""
    if source.startswith(("http://", "https://")):
        return source.rstrip("/")
    if not server or not token:
        raise InvalidInput(
            f"to download {source} by name, give the server and a token",
            hint="pass --server URL and --token (or RINGFENCE_URL / RINGFENCE_TOKEN), "
            "or give a download link",
        )
    response = client.post(
        f"{server.rstrip('/')}/api/v1/distribution/links",
        json={"release": source},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 200:
        raise error_from(response)
    return str(response.json()["url"]).rstrip("/")


def _get_listing(client: httpx.Client, link: str) -> dict[str, Any]:
    response = _with_retries(lambda: client.get(f"{link}/files.json"))
    if response.status_code != 200:
        raise error_from(response)
    listing: dict[str, Any] = response.json()
    return listing


def _with_retries(call: Callable[[], httpx.Response]) -> httpx.Response:
    delay = 0.25
    refused = 0
    for attempt in range(RETRIES):
        try:
            response = call()
        except httpx.TransportError as exc:
            refused += isinstance(exc, httpx.ConnectError)
            if attempt == RETRIES - 1 or refused == CONNECT_RETRIES:
                raise
        else:
            if response.status_code < 500:
                return response
            if attempt == RETRIES - 1:
                return response
        time.sleep(delay)
        delay = min(delay * 2, 4.0)
    raise AssertionError("unreachable")


def fetch_file(
    client: httpx.Client,
    url: str,
    target: Path,
    size: int,
    partial_root: Path,
    rel: str,
    progress: Progress | None = None,
) -> int:
    """Download one file to `target`, resuming a partial copy; returns bytes fetched."""
    if target.is_file() and target.stat().st_size == size:
        return 0
    part = partial_root / f"{rel}.part"
    etag_file = partial_root / f"{rel}.etag"
    part.parent.mkdir(parents=True, exist_ok=True)
    fetched = 0
    delay = 0.25
    refused = 0
    for attempt in range(RETRIES):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if 0 < have < size and etag_file.exists():
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = etag_file.read_text().strip()
        elif have >= size:
            break
        try:
            with client.stream("GET", url, headers=headers) as response:
                if 400 <= response.status_code < 500:
                    response.read()
                    raise error_from(response)
                if response.status_code >= 500:
                    raise httpx.RemoteProtocolError(f"server error {response.status_code}")
                mode = "ab" if response.status_code == 206 else "wb"
                if mode == "wb" and progress and have:
                    progress(rel, -have, size)
                etag_file.write_text(response.headers.get("etag", ""))
                with part.open(mode) as fh:
                    for chunk in response.iter_bytes(CHUNK):
                        fh.write(chunk)
                        fetched += len(chunk)
                        if progress:
                            progress(rel, len(chunk), size)
            if part.stat().st_size == size:
                break
        except httpx.TransportError as exc:
            refused += isinstance(exc, httpx.ConnectError)
            if attempt == RETRIES - 1 or refused == CONNECT_RETRIES:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
    if not part.exists() or part.stat().st_size != size:
        raise IntegrityError(f"{rel}: the download stopped short of {size} bytes", hint="retry")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, target)
    etag_file.unlink(missing_ok=True)
    return fetched


def fetch_manifest(client: httpx.Client, link: str, wait_s: float = MANIFEST_WAIT_S) -> str | None:
    """The signed manifest bundle of the link's copy, waiting while the server computes it."""
    deadline = time.monotonic() + wait_s
    while True:
        response = _with_retries(
            lambda: client.get(f"{link}/{manifests.SIGNATURE_NAME}", headers={"Accept": "*/*"})
        )
        if response.status_code == 200:
            return response.text
        if response.status_code != 404 or time.monotonic() > deadline:
            return None
        time.sleep(1.0)


def server_of(link: str) -> str:
    """The server's base URL from a link page URL."""
    return link.split("/d/", 1)[0]


def download(
    source: str,
    out: Path,
    *,
    server: str | None = None,
    token: str | None = None,
    workers: int = 4,
    public_key: bytes | None = None,
    manifest_wait_s: float = MANIFEST_WAIT_S,
    progress: Progress | None = None,
    on_listing: Callable[[dict[str, Any]], None] | None = None,
) -> DownloadReport:
    """Download the copy `source` names (a link URL, or MODEL@VERSION) into `out` and verify."""
    named = server_of(source) if source.startswith(("http://", "https://")) else server
    with transport_errors(named or source), session(follow_redirects=True) as client:
        link = resolve_link(source, server=server, token=token, client=client)
        listing = _get_listing(client, link)
        if on_listing:
            on_listing(listing)
        out.mkdir(parents=True, exist_ok=True)
        partial_root = out / PARTIAL_DIR
        report = DownloadReport(listing["release"], out)
        files = [(str(_safe_path(f["path"])), f) for f in listing["files"]]

        def one(item: tuple[str, dict[str, Any]]) -> int:
            rel, f = item
            return fetch_file(
                client, f["url"], out / rel, int(f["size"]), partial_root, rel, progress
            )

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for (rel, _), n in zip(files, pool.map(one, files), strict=True):
                report.files.append(rel)
                report.bytes_fetched += n
        shutil.rmtree(partial_root, ignore_errors=True)
        bundle = fetch_manifest(client, link, manifest_wait_s)
        if bundle is None:
            return report
        (out / manifests.SIGNATURE_NAME).write_text(bundle)
        if public_key is None:
            public_key = _signing_key(client, server_of(link))
    check = verify_directory(out, public_key)
    report.check = check
    report.verified = check.ok
    return report


def _signing_key(client: httpx.Client, server: str) -> bytes:
    response = _with_retries(
        lambda: client.get(
            f"{server}/api/v1/distribution/signing-key.pem", headers={"Accept": "*/*"}
        )
    )
    if response.status_code != 200:
        raise error_from(response)
    return response.content


def signing_key(server: str) -> bytes:
    """The lab's public manifest key (PEM), as `server` publishes it."""
    with transport_errors(server), session() as client:
        return _signing_key(client, server)


def verify_directory(directory: Path, public_key: bytes) -> manifests.DirectoryCheck:
    """Check `directory` against its `model.sig` under the lab's public key."""
    signature = directory / manifests.SIGNATURE_NAME
    if not signature.is_file():
        raise NotFound(
            f"{signature} does not exist", hint="download the manifest with `ringfence download`"
        )
    signed = manifests.verify_bundle(signature.read_text(), public_key)
    return manifests.check_directory(directory, signed)

"""How a plain file leaves the server: the file-sending path, never a Python loop of chunks.

A plain file (config, tokenizer, card: no fingerprint) is the stored original, byte for byte,
so once ringfence decided the request (grant, range, ETag, link charge, audit event) the
bytes may go out by the fastest path the deployment has:

- behind nginx with `RINGFENCE_ACCEL_REDIRECT=/_blobs/`, a whole file is handed over with
  `X-Accel-Redirect` to nginx's `internal` location over the blob directory, which sends it
  with sendfile (deploy/nginx/ringfence.conf puts ringfence's headers back on it);
- otherwise Starlette's `FileResponse`, which uses the server's `http.response.pathsend`
  where it has one.

A byte range always goes by `FileResponse`: nginx would apply the client's own Range and
If-Range headers to the file, and ringfence's decision (already audited and charged) must be
the one that holds. Fingerprinted weights never come here: they stream from Python, through
`read_ahead`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from ringfence.distribution.ranges import ByteRange

#: response headers nginx drops from an X-Accel-Redirect answer and sends the file without
_ACCEL_DROPS = ("content-length", "content-range")


class BlobFileResponse(FileResponse):
    """Exactly `byte_range` of a local file, with ringfence's own headers and nothing else.

    FileResponse reads the Range header itself and adds validators from the file's mtime;
    here the range is the one ringfence decided and the ETag the recipient's, so the request
    it sees carries only that range, and no stat headers are added.
    """

    chunk_size = 1024 * 1024

    def __init__(self, path: Path, byte_range: ByteRange, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers, media_type="application/octet-stream")
        self.byte_range = byte_range

    def set_stat_headers(self, stat_result: os.stat_result) -> None:
        """Keep ringfence's Content-Length and ETag; add no Last-Modified (see the class)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the decided slice (206) or the whole file (200)."""
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        r = self.byte_range
        if r.partial:
            headers.append((b"range", f"bytes={r.start}-{r.end - 1}".encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


def accel_path(prefix: str, blob_dir: Path, path: Path) -> str | None:
    """The nginx-internal URI of a blob under `prefix`, or None when it lies elsewhere."""
    try:
        relative = path.resolve().relative_to(blob_dir.resolve())
    except ValueError:
        return None
    return f"/{prefix.strip('/')}/{relative.as_posix()}"


def plain_file_response(
    path: Path,
    byte_range: ByteRange,
    headers: dict[str, str],
    *,
    accel_prefix: str,
    blob_dir: Path,
) -> Response:
    """The response that sends a plain file's decided bytes by the file-sending path."""
    uri = accel_path(accel_prefix, blob_dir, path) if accel_prefix else None
    if uri is None or byte_range.partial:
        return BlobFileResponse(path, byte_range, headers)
    kept = {k: v for k, v in headers.items() if k.lower() not in _ACCEL_DROPS}
    return Response(
        status_code=200,
        headers={**kept, "X-Accel-Redirect": uri},
        media_type="application/octet-stream",
    )


async def read_ahead(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, the next one made in a worker thread while the current one is being sent.

    A fingerprinted stream is a pipeline of two stages, making a chunk (read, mark: no GIL)
    and sending it (the socket write): one chunk ahead, the two overlap, where a plain sync
    iterator would alternate them. Every chunk is a fresh bytes object, so the one being
    sent is never overwritten; memory is one chunk more per stream.
    """

    def step() -> bytes | None:
        return next(chunks, None)

    pending: asyncio.Future[bytes | None] = asyncio.ensure_future(anyio.to_thread.run_sync(step))
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(anyio.to_thread.run_sync(step))
            yield chunk
    finally:
        # A client gone mid-stream: let the chunk in the making finish (a thread cannot be
        # interrupted), then close the source, which closes its file.
        with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
            # Its own end (an error, or cancelled with the response) matters no more: the
            # stream is over, and what ended it propagates after this block.
            await pending
        close = getattr(chunks, "close", None)
        if close is not None:
            close()

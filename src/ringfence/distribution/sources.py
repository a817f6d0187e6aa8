"""Where distribution meets the other areas: who may download, and which bytes they get.

The only module of the distribution area that calls into `access` and `fingerprint`: "may
this user download this release" and "the bytes this recipient gets for this artifact and
range". Everything else in distribution goes through these functions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from ringfence.access.models import Grant
from ringfence.access.services import authorise_download
from ringfence.accounts.models import User
from ringfence.catalogue.models import Artifact, Release
from ringfence.distribution.sending import read_ahead
from ringfence.errors import InvalidInput
from ringfence.fingerprint.plan import FingerprintPlan
from ringfence.fingerprint.services import (
    artifact_plan,
    codeword,
    register_recipient,
    release_key,
    release_params,
)
from ringfence.fingerprint.stream import fingerprinted_bytes
from ringfence.operations import metrics
from ringfence.wiring import Services

__all__ = [
    "Recipient",
    "authorise",
    "copy_bytes",
    "file_plan",
    "plain_file",
    "recipient_for",
    "sent_bytes",
]

#: bytes per chunk of a fingerprinted stream
STREAM_CHUNK = 2 * 1024 * 1024


#: fingerprint plans kept per process (a few KiB each for a model of hundreds of tensors)
PLAN_CACHE_SIZE = 4096

_plans: OrderedDict[tuple[object, ...], FingerprintPlan | None] = OrderedDict()
_plans_lock = threading.Lock()


def file_plan(services: Services, release: Release, artifact: Artifact) -> FingerprintPlan | None:
    """How `artifact` is fingerprinted for `release` (None: every recipient gets it as is).

    Built once per process: a published file's bytes, and so its tensor index, never change,
    so the plan is kept under the release's key, code and the file's hash. Only a miss reads
    the tensor index (`artifact.tensors`, a lazy load): call this inside the request's
    transaction first (`prepare_delivery` does), and the calls after it closed hit the cache.
    Nothing about who may download is kept here: grants are read on every request.
    """
    key = release_key(services.secrets, release)
    params = release_params(release)
    cache_key = (key, params, artifact.id, artifact.sha256, artifact.format, artifact.data_offset)
    with _plans_lock:
        if cache_key in _plans:
            _plans.move_to_end(cache_key)
            return _plans[cache_key]
    plan = artifact_plan(key, artifact, params)
    with _plans_lock:
        _plans[cache_key] = plan
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


def authorise(session: Session, user: User | None, release: Release) -> Grant:
    """The grant that lets `user` download `release` now; raises with the reason otherwise."""
    return authorise_download(session, user, release)


@dataclass(frozen=True)
class Recipient:
    """Whoever receives one fingerprinted copy of a release."""

    release_id: int
    user_id: int
    email: str
    #: the fingerprint area's dense index of this recipient within the release
    index: int


def recipient_for(session: Session, release: Release, user: User) -> Recipient:
    """The recipient `user` is for `release`, registered with the fingerprint area if new."""
    registered = register_recipient(session, release, user.email, actor=user.email, user_id=user.id)
    return Recipient(release.id, user.id, user.email, int(registered.index))


def copy_bytes(
    services: Services,
    release: Release,
    artifact: Artifact,
    recipient: Recipient,
    start: int,
    end: int,
) -> Iterator[bytes]:
    """Bytes [start, end) of `artifact` as `recipient` receives them, in chunks.

    Constant memory whatever the range; blocking (numeric work and file reads), so run it
    off the event loop. Needs no database session.
    """
    return _copy(services, release, artifact, recipient, start, end)[1]


async def sent_bytes(
    services: Services,
    release: Release,
    artifact: Artifact,
    recipient: Recipient,
    start: int,
    end: int,
) -> AsyncIterator[bytes]:
    """`copy_bytes` for a download, made one chunk ahead of the socket (`read_ahead`).

    What reaches the recipient counts as bytes served: a chunk is counted once the server
    asks for the next, so a client that hung up mid-chunk is not counted for it.
    """
    kind, chunks = _copy(services, release, artifact, recipient, start, end)
    counter = metrics.DOWNLOAD_BYTES.labels(kind)
    async for chunk in read_ahead(chunks):
        yield chunk
        counter.inc(len(chunk))


def _copy(
    services: Services,
    release: Release,
    artifact: Artifact,
    recipient: Recipient,
    start: int,
    end: int,
) -> tuple[str, Iterator[bytes]]:
    # The kind of bytes ("fingerprinted" or "plain") and the bytes themselves.
    plan = file_plan(services, release, artifact)
    if plan is None or not plan.tensors:
        return "plain", _plain(services, artifact, start, end)
    bits = codeword(
        release_key(services.secrets, release), recipient.index, release_params(release)
    )
    return "fingerprinted", _marked(services, artifact, plan, bits, start, end)


def plain_file(services: Services, release: Release, artifact: Artifact) -> Path | None:
    """The stored original of a file every recipient receives unchanged, if on this machine.

    None for a fingerprinted file (its bytes differ per recipient) and for blob stores
    without local files (S3): those stream through `copy_bytes`.
    """
    plan = file_plan(services, release, artifact)
    if plan is not None and plan.tensors:
        return None
    return services.blobs.local_path(artifact.sha256)


def _plain(services: Services, artifact: Artifact, start: int, end: int) -> Iterator[bytes]:
    # The stored bytes as they are (a file nothing marks), read without the tensor index.
    if not 0 <= start <= end <= artifact.size:
        raise InvalidInput(f"byte range {start}-{end} is outside {artifact.path}")
    with services.blobs.open(artifact.sha256) as fh:
        fh.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = fh.read(min(remaining, STREAM_CHUNK))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def _marked(
    services: Services,
    artifact: Artifact,
    plan: FingerprintPlan,
    bits: npt.NDArray[np.bool_],
    start: int,
    end: int,
) -> Iterator[bytes]:
    # Smaller chunks than the fingerprint area's default: with many concurrent downloads
    # each stream holds a few chunks (read, marked, in flight), so this bounds server memory.
    with services.blobs.open(artifact.sha256) as fh:
        yield from fingerprinted_bytes(fh, plan, bits, start, end, chunk=STREAM_CHUNK)

"""Each recipient's signed manifest: computed once per grant holder, stored, indexed.

The manifest lists the sha256 of every file exactly as one recipient receives it; computing
it reads the whole fingerprinted copy, so it runs off the request path (the job
`distribution.manifest` in `tasks.py`), claimed by one worker at a time. `services`
re-exports the public functions, the area's public face.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, selectinload

from ringfence import jobs
from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.catalogue.models import Artifact, Model, Release
from ringfence.db import utcnow
from ringfence.distribution import manifests, sources
from ringfence.distribution.models import RecipientFileHash, RecipientManifest
from ringfence.errors import NotFound
from ringfence.wiring import Services


def release_by_id(session: Session, release_id: int) -> Release:
    release = session.scalars(
        select(Release)
        .where(Release.id == release_id)
        .options(
            selectinload(Release.artifacts).selectinload(Artifact.tensors),
            selectinload(Release.model).selectinload(Model.organisation),
        )
    ).first()
    if release is None:
        raise NotFound(f"no release {release_id}")
    return release


def manifest_row(session: Session, release_id: int, user_id: int) -> RecipientManifest | None:
    """The recipient's manifest row, if one was asked for."""
    return session.scalars(
        select(RecipientManifest).where(
            RecipientManifest.release_id == release_id, RecipientManifest.user_id == user_id
        )
    ).first()


def ensure_manifest(session: Session, release: Release, user: User) -> RecipientManifest:
    """The recipient's manifest row, created pending (and its job queued) when missing."""
    row = manifest_row(session, release.id, user.id)
    if row is None:
        row = RecipientManifest(release_id=release.id, user_id=user.id, state="pending", files={})
        try:
            with session.begin_nested():
                session.add(row)
        except DBIntegrityError:
            # A job worker (or another server) made the row meanwhile: use theirs.
            found = manifest_row(session, release.id, user.id)
            if found is None:
                raise
            return found
        # A grant from before the job queue has no job yet: queue one with the row.
        jobs.enqueue(
            session,
            "distribution.manifest",
            subject=f"release:{release.id}:user:{user.id}",
            release_id=release.id,
            user_id=user.id,
        )
    return row


def compute_manifest(services: Services, release_id: int, user_id: int) -> RecipientManifest:
    """Hash every file of the recipient's copy, sign the manifest and store it (idempotent).

    Reads the bytes outside any transaction (a pass over the whole release), then writes.
    """
    with services.sessions() as session:
        release = release_by_id(session, release_id)
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        recipient = sources.recipient_for(session, release, user)
        session.commit()
    files: dict[str, str] = {}
    for artifact in release.artifacts:
        digest, size = manifests.sha256_of(
            sources.copy_bytes(services, release, artifact, recipient, 0, artifact.size)
        )
        if size != artifact.size:
            raise RuntimeError(f"{artifact.path}: got {size} bytes, expected {artifact.size}")
        files[artifact.path] = digest
    name = f"{release.model.organisation.slug}/{release.model.name}@{release.version}"
    bundle = manifests.sign(services.secrets, name, files)
    values = {
        "state": "ready",
        "files": files,
        "root_sha256": manifests.root_digest(files),
        "bundle": bundle,
        "error": None,
        "computed_at": utcnow(),
    }
    return _store_manifest(services, release_id, user_id, values)


def _store_manifest(
    services: Services, release_id: int, user_id: int, values: dict[str, Any]
) -> RecipientManifest:
    # Another worker may insert the same row meanwhile: the loser updates it instead.
    for attempt in range(2):
        with services.sessions() as session:
            row = manifest_row(session, release_id, user_id)
            if row is None:
                row = RecipientManifest(release_id=release_id, user_id=user_id, files={})
                session.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            _index_file_hashes(session, row)
            try:
                session.commit()
            except DBIntegrityError:
                if attempt:
                    raise
                continue
            return row
    raise AssertionError("unreachable")


def _index_file_hashes(session: Session, row: RecipientManifest) -> None:
    """Keep `recipient_file_hashes` equal to the files of the row, while it is ready."""
    session.execute(
        delete(RecipientFileHash).where(
            RecipientFileHash.release_id == row.release_id,
            RecipientFileHash.user_id == row.user_id,
        )
    )
    if row.state == "ready":
        session.add_all(
            RecipientFileHash(
                sha256=digest, release_id=row.release_id, user_id=row.user_id, path=path
            )
            for path, digest in (row.files or {}).items()
        )


def pending_manifests(session: Session) -> list[tuple[int, int]]:
    """(release_id, user_id) of active grants whose holder has no ready manifest yet.

    Some may be claimed by another process right now: `claim_manifest` says which.
    """
    ready = select(RecipientManifest.release_id, RecipientManifest.user_id).where(
        RecipientManifest.state.in_(("ready", "failed"))
    )
    done = {(r, u) for r, u in session.execute(ready)}
    rows = session.execute(
        select(Grant.release_id, Grant.user_id).where(
            Grant.state == "active", Grant.expires_at > utcnow()
        )
    )
    return [(r, u) for r, u in rows if (r, u) not in done]


#: a claim this old belongs to a worker that died mid-computation: another may take it over
CLAIM_TIMEOUT = timedelta(minutes=30)


def claim_manifest(
    services: Services, release_id: int, user_id: int, *, timeout: timedelta = CLAIM_TIMEOUT
) -> bool:
    """Take one manifest's computation for this process; False when done or claimed elsewhere.

    With several server processes each runs a manifest worker: the claim is one conditional
    UPDATE (or the INSERT of the unique row) that only one process wins, so a manifest is
    computed once, not once per worker. `computed_at` holds the claim's time meanwhile; a
    claim older than `timeout` is a dead worker's and is taken over.
    """
    now = utcnow()
    with services.sessions() as session:
        claimed = session.execute(
            update(RecipientManifest)
            .where(
                RecipientManifest.release_id == release_id,
                RecipientManifest.user_id == user_id,
                or_(
                    RecipientManifest.state == "pending",
                    and_(
                        RecipientManifest.state == "computing",
                        RecipientManifest.computed_at < now - timeout,
                    ),
                ),
            )
            .values(state="computing", computed_at=now)
        )
        if claimed.rowcount:  # type: ignore[attr-defined]
            session.commit()
            return True
        if manifest_row(session, release_id, user_id) is not None:
            return False  # ready, failed, or another process's fresh claim
        session.add(
            RecipientManifest(
                release_id=release_id, user_id=user_id, state="computing", files={}, computed_at=now
            )
        )
        try:
            session.commit()
        except DBIntegrityError:
            return False  # another process inserted it first
        return True


def release_claim(services: Services, release_id: int, user_id: int) -> None:
    """Give a claimed manifest back (its job will retry): pending again, claimable at once."""
    with services.sessions() as session:
        session.execute(
            update(RecipientManifest)
            .where(
                RecipientManifest.release_id == release_id,
                RecipientManifest.user_id == user_id,
                RecipientManifest.state == "computing",
            )
            .values(state="pending")
        )
        session.commit()


def mark_failed(services: Services, release_id: int, user_id: int, error: str) -> None:
    """Record that a manifest could not be computed (a person reads `error`)."""
    _store_manifest(services, release_id, user_id, {"state": "failed", "error": error[:500]})


# -- the Hub-compatible names -----------------------------------------------------------------

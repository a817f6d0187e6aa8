"""Distribution operations: who gets which bytes through which door, and the record of it.

Three doors lead to the same bytes: a signed link (`/d/{token}`), the Hugging Face-compatible
API (bearer token) and the client CLI (which uses links). Every request re-checks the grant
through `sources.authorise`, so revocation or narrowing takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, selectinload

from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Artifact, Model, Organisation, Release
from ringfence.db import utcnow
from ringfence.distribution import links, manifests, sources
from ringfence.distribution.models import DownloadLink, RecipientFileHash, RecipientManifest
from ringfence.distribution.ranges import ByteRange, if_range_holds, parse_range
from ringfence.errors import NotFound, TokenInvalid
from ringfence.operations import metrics
from ringfence.secrets import SecretStore
from ringfence.web.headers import content_disposition
from ringfence.wiring import Services


def commit_hash(secrets: SecretStore, release: Release, user_id: int) -> str:
    """The 40-hex "commit" one recipient sees for a release (Hub clients cache by it).

    Keyed and per recipient: two people on one machine never share a cache entry, and the
    value says nothing about the release's bytes.
    """
    key = secrets.derive("distribution:commit")
    return hmac.new(key, f"{release.id}:{user_id}".encode(), hashlib.sha256).hexdigest()[:40]


def _keyed_etag(secrets: SecretStore, release: Release, artifact: Artifact, user_id: int) -> str:
    key = secrets.derive("distribution:etag")
    msg = f"{release.id}:{user_id}:{artifact.path}".encode()
    # 40 hex, never 64: Hub clients treat a 64-hex ETag as the sha256 of the body.
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:40]


def etag(
    session: Session, secrets: SecretStore, release: Release, artifact: Artifact, user_id: int
) -> str:
    """The ETag of one recipient's copy of one file.

    The sha256 of the recipient's own bytes once their manifest is computed (it is in the
    manifest they receive anyway), else a keyed hash. Never the original's hash: for a
    fingerprinted file it would tell which copy is the unmarked one.
    """
    manifest = manifest_row(session, release.id, user_id)
    if manifest is not None and manifest.state == "ready" and artifact.path in manifest.files:
        return str(manifest.files[artifact.path])
    return _keyed_etag(secrets, release, artifact, user_id)


def artifact_of(release: Release, path: str) -> Artifact:
    """The release's file at `path`."""
    for artifact in release.artifacts:
        if artifact.path == path:
            return artifact
    raise NotFound(f"{release.ref} has no file {path!r}")


@dataclass(frozen=True)
class Delivery:
    """Everything needed to send one response, computed inside the request's transaction."""

    release: Release
    artifact: Artifact
    recipient: sources.Recipient
    byte_range: ByteRange
    etag: str
    commit: str

    def headers(self) -> dict[str, str]:
        """Response headers: exact length, validators, ranges, the Hub's commit and size."""
        filename = self.artifact.path.rsplit("/", 1)[-1]
        headers = {
            "Content-Length": str(self.byte_range.length),
            "ETag": f'"{self.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": content_disposition(filename),
            "Cache-Control": "private, no-store",
            "X-Repo-Commit": self.commit,
            "X-Linked-Size": str(self.artifact.size),
        }
        if self.byte_range.partial:
            headers["Content-Range"] = self.byte_range.content_range()
        return headers


def prepare_delivery(
    session: Session,
    services: Services,
    *,
    release: Release,
    path: str,
    user: User | None,
    range_header: str | None,
    if_range: str | None,
    send_body: bool,
    link: DownloadLink | None = None,
    via: str,
    ip: str | None = None,
    user_agent: str | None = None,
) -> Delivery:
    """Check the grant, choose the bytes, charge the link and audit the use (GET only)."""
    grant = sources.authorise(session, user, release)
    assert user is not None  # authorise refuses anonymous callers
    if link is not None and not _link_of(link, grant):
        raise TokenInvalid("this download link belongs to an earlier grant", hint="ask again")
    artifact = artifact_of(release, path)
    recipient = sources.recipient_for(session, release, user)
    tag = etag(session, services.secrets, release, artifact, user.id)
    if range_header is not None and not if_range_holds(if_range, tag):
        range_header = None  # the copy changed since the client began: send all of it
    byte_range = parse_range(range_header, artifact.size)
    if send_body:
        if link is not None:
            links.charge(session, link, byte_range.length)
        record(
            session,
            EventTag.Distribution.Downloaded,
            actor=user.email,
            subject=f"release:{release.ref}",
            ip=ip,
            user_id=user.id,
            payload={
                "path": artifact.path,
                "bytes": byte_range.length,
                "range": [byte_range.start, byte_range.end],
                "size": artifact.size,
                "via": via,
                "link_id": link.id if link else None,
                "grant_id": grant.id,
                "recipient": recipient.index,
                "user_agent": (user_agent or "")[:300],
            },
        )
    return Delivery(
        release,
        artifact,
        recipient,
        byte_range,
        tag,
        commit_hash(services.secrets, release, user.id),
    )


def record_refusal(
    services: Services,
    *,
    subject: str,
    reason: str,
    actor: str,
    ip: str | None,
    user_agent: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit a refused download in its own transaction (the request's rolls back)."""
    with services.sessions() as session:
        record(
            session,
            EventTag.Distribution.DownloadRefused,
            actor=actor,
            subject=subject,
            ip=ip,
            payload={"reason": reason, "user_agent": (user_agent or "")[:300], **(detail or {})},
        )
        session.commit()
    metrics.DOWNLOADS_REFUSED.inc()


# -- links ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkAccess:
    """A link that is valid now, with the release, the holder and their current grant."""

    link: DownloadLink
    release: Release
    user: User
    grant: Grant


def open_link(session: Session, secrets: SecretStore, token: str) -> LinkAccess:
    """The live link behind a URL token, with its grant re-checked now."""
    link = links.read_link(session, secrets, token)
    release = _release_by_id(session, link.release_id)
    user = session.get(User, link.user_id)
    if user is None:
        raise TokenInvalid("the holder of this download link no longer exists")
    grant = sources.authorise(session, user, release)
    if not _link_of(link, grant):
        raise TokenInvalid("this download link belongs to an earlier grant", hint="ask again")
    return LinkAccess(link, release, user, grant)


def _link_of(link: DownloadLink, grant: Grant) -> bool:
    # The same grant row and the same issuance of it: a revoked grant approved again is a
    # new issuance, and the links of the old one never come back.
    return link.grant_id == grant.id and link.grant_issuance == grant.issuance


def create_link_for(
    session: Session,
    services: Services,
    release: Release,
    user: User,
    *,
    actor: str,
    hours: int = links.DEFAULT_HOURS,
    uses: int = links.DEFAULT_USES,
    ip: str | None = None,
) -> links.NewLink:
    """A link for `user`'s own grant (checked now); also queues their manifest."""
    grant = sources.authorise(session, user, release)
    new = links.create_link(
        session, services.secrets, grant, release, actor=actor, hours=hours, uses=uses, ip=ip
    )
    ensure_manifest(session, release, user)
    return new


def _release_by_id(session: Session, release_id: int) -> Release:
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


def file_listing(
    session: Session, services: Services, release: Release, user: User, base: str
) -> dict[str, Any]:
    """The files of `user`'s copy of `release`: path, size, ETag and URL under `base`."""
    manifest = manifest_row(session, release.id, user.id)
    ready = manifest is not None and manifest.state == "ready"
    return {
        "release": release.ref,
        "repo_id": f"{release.model.organisation.slug}/{release.model.name}",
        "revision": release.version,
        "commit": commit_hash(services.secrets, release, user.id),
        "manifest": f"{base}/{manifests.SIGNATURE_NAME}" if ready else None,
        "files": [
            {
                "path": a.path,
                "size": a.size,
                "sha256": manifest.files.get(a.path) if ready and manifest else None,
                "url": f"{base}/f/{a.path}",
            }
            for a in release.artifacts
        ],
    }


def download_script(listing: dict[str, Any]) -> str:
    """A shell script that fetches, resumes and checks one copy with only curl and sha256sum."""
    lines = [
        "#!/bin/sh",
        f"# Download {listing['release']} (your own fingerprinted copy) with curl and sha256sum.",
        "# Rerun it to resume after an interruption. The link expires and has limited uses.",
        "set -eu",
        'OUT="${1:-.}"',
        'mkdir -p "$OUT"',
        'cd "$OUT"',
    ]
    for f in listing["files"]:
        path = shlex.quote(f["path"])
        url = shlex.quote(f["url"])
        if "/" in f["path"]:
            lines.append(f"mkdir -p {shlex.quote(f['path'].rsplit('/', 1)[0])}")
        lines.append(
            f'[ "$(wc -c < {path} 2>/dev/null || echo 0)" -eq {f["size"]} ] || '
            f"curl -fL --retry 5 --retry-all-errors -C - -o {path} {url}"
        )
    sums = [(f["sha256"], f["path"]) for f in listing["files"] if f.get("sha256")]
    if sums:
        lines.append("sha256sum -c <<'SUMS'")
        lines += [f"{digest}  {path}" for digest, path in sums]
        lines.append("SUMS")
    else:
        lines.append(
            "echo 'your manifest is still being computed: check later with `ringfence verify`'"
        )
    lines.append(f"echo 'done: {listing['release']}'")
    return "\n".join(lines) + "\n"


# -- manifests --------------------------------------------------------------------------------


def manifest_row(session: Session, release_id: int, user_id: int) -> RecipientManifest | None:
    """The recipient's manifest row, if one was asked for."""
    return session.scalars(
        select(RecipientManifest).where(
            RecipientManifest.release_id == release_id, RecipientManifest.user_id == user_id
        )
    ).first()


def ensure_manifest(session: Session, release: Release, user: User) -> RecipientManifest:
    """The recipient's manifest row, created pending (a worker computes it) when missing."""
    row = manifest_row(session, release.id, user.id)
    if row is None:
        row = RecipientManifest(release_id=release.id, user_id=user.id, state="pending", files={})
        session.add(row)
        session.flush()
    return row


def compute_manifest(services: Services, release_id: int, user_id: int) -> RecipientManifest:
    """Hash every file of the recipient's copy, sign the manifest and store it (idempotent).

    Reads the bytes outside any transaction (a pass over the whole release), then writes.
    """
    with services.sessions() as session:
        release = _release_by_id(session, release_id)
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


def claim_manifest(services: Services, release_id: int, user_id: int) -> bool:
    """Take one manifest's computation for this process; False when done or claimed elsewhere.

    With several server processes each runs a manifest worker: the claim is one conditional
    UPDATE (or the INSERT of the unique row) that only one process wins, so a manifest is
    computed once, not once per worker. `computed_at` holds the claim's time meanwhile.
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
                        RecipientManifest.computed_at < now - CLAIM_TIMEOUT,
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


def mark_failed(services: Services, release_id: int, user_id: int, error: str) -> None:
    """Record that a manifest could not be computed (a person reads `error`)."""
    _store_manifest(services, release_id, user_id, {"state": "failed", "error": error[:500]})


# -- the Hub-compatible names -----------------------------------------------------------------


def hub_release(
    session: Session,
    secrets: SecretStore,
    namespace: str,
    name: str,
    revision: str,
    user: User | None,
) -> Release:
    """The release a Hub repo id and revision name: a version, "main" (newest) or our commit."""
    org = session.scalars(select(Organisation).where(Organisation.slug == namespace)).first()
    model = None
    if org is not None:
        model = session.scalars(
            select(Model).where(Model.organisation_id == org.id, Model.name == name)
        ).first()
    if model is None:
        raise NotFound(f"no model {namespace}/{name}")
    releases = list(
        session.scalars(
            select(Release)
            .where(Release.model_id == model.id)
            .options(
                selectinload(Release.artifacts).selectinload(Artifact.tensors),
                selectinload(Release.model).selectinload(Model.organisation),
            )
            .order_by(Release.created_at.desc(), Release.id.desc())
        )
    )
    for release in releases:
        if release.version == revision:
            return release
    if revision == "main" and releases:
        return releases[0]
    if user is not None and len(revision) == 40:
        for release in releases:
            if hmac.compare_digest(commit_hash(secrets, release, user.id), revision):
                return release
    raise RevisionNotFound(f"{namespace}/{name} has no revision {revision!r}")


class RevisionNotFound(NotFound):
    """A Hub revision that names no release of the model."""

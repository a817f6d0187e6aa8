"""Distribution operations: who gets which bytes through which door, and the record of it.

Three doors lead to the same bytes: a signed link (`/d/{token}`), the Hugging Face-compatible
API (bearer token) and the client CLI (which uses links). Every request re-checks the grant
through `sources.authorise`, so revocation or narrowing takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager, joinedload

from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Artifact, Model, Organisation, Release
from ringfence.distribution import links, manifests, sources

# The recipient-manifest jobs live in manifest_jobs; this module is the area's public face.
from ringfence.distribution.manifest_jobs import (
    CLAIM_TIMEOUT as CLAIM_TIMEOUT,
)
from ringfence.distribution.manifest_jobs import (
    claim_manifest as claim_manifest,
)
from ringfence.distribution.manifest_jobs import (
    compute_manifest as compute_manifest,
)
from ringfence.distribution.manifest_jobs import (
    ensure_manifest as ensure_manifest,
)
from ringfence.distribution.manifest_jobs import (
    manifest_row as manifest_row,
)
from ringfence.distribution.manifest_jobs import (
    mark_failed as mark_failed,
)
from ringfence.distribution.manifest_jobs import (
    pending_manifests as pending_manifests,
)
from ringfence.distribution.manifest_jobs import (
    release_by_id as release_by_id,
)
from ringfence.distribution.manifest_jobs import (
    release_claim as release_claim,
)
from ringfence.distribution.models import DownloadLink, RecipientManifest
from ringfence.distribution.ranges import ByteRange, if_range_holds, parse_range
from ringfence.errors import NotFound, TokenInvalid
from ringfence.operations import metrics
from ringfence.secrets import SecretStore
from ringfence.web.headers import content_disposition
from ringfence.wiring import Services


def commit_hash(
    secrets: SecretStore, release: Release, user_id: int, *, card: str | None = None
) -> str:
    """The 40-hex "commit" one recipient sees for a release (Hub clients cache by it).

    Keyed and per recipient: two people on one machine never share a cache entry, and the
    value says nothing about the release's bytes. `card` is the blob id of the model card the
    Hub API serves (`distribution.card`): a new card is a new commit; without one the commit
    is what it always was.
    """
    return _commit_of(secrets, release.id, user_id, card)


def _commit_of(secrets: SecretStore, release_id: int, user_id: int, card: str | None) -> str:
    key = secrets.derive("distribution:commit")
    msg = f"{release_id}:{user_id}" + (f":card:{card}" if card else "")
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()[:40]


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
    return etag_of(manifest_row(session, release.id, user_id), secrets, release, artifact, user_id)


def etag_of(
    manifest: RecipientManifest | None,
    secrets: SecretStore,
    release: Release,
    artifact: Artifact,
    user_id: int,
) -> str:
    """`etag` with the recipient's manifest row already read (one query for a file list)."""
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
    card: str | None = None,
) -> Delivery:
    """Check the grant, choose the bytes, charge the link and audit the use (GET only).

    `card` is the blob id of the release's Hub model card, which the commit folds in.
    """
    grant = sources.authorise(session, user, release)
    assert user is not None  # authorise refuses anonymous callers
    if link is not None and not _link_of(link, grant):
        raise TokenInvalid("this download link belongs to an earlier grant", hint="ask again")
    artifact = artifact_of(release, path)
    # Built (or found) while the transaction can still read the tensor index: the bytes are
    # sent after it closed, from the per-process plan.
    sources.file_plan(services, release, artifact)
    recipient = sources.recipient_for(session, release, user)
    tag = etag(session, services.secrets, release, artifact, user.id)
    if range_header is not None and not if_range_holds(if_range, tag):
        range_header = None  # the copy changed since the client began: send all of it
    byte_range = parse_range(range_header, artifact.size)
    if send_body:
        if link is not None:
            links.charge(session, link, byte_range.length)
        record_download(
            session,
            user,
            release,
            path=artifact.path,
            byte_range=byte_range,
            size=artifact.size,
            via=via,
            ip=ip,
            user_agent=user_agent,
            link_id=link.id if link else None,
            grant_id=grant.id,
            recipient=recipient.index,
        )
    return Delivery(
        release,
        artifact,
        recipient,
        byte_range,
        tag,
        commit_hash(services.secrets, release, user.id, card=card),
    )


def record_download(
    session: Session,
    user: User,
    release: Release,
    *,
    path: str,
    byte_range: ByteRange,
    size: int,
    via: str,
    ip: str | None,
    user_agent: str | None,
    **detail: object,
) -> None:
    """The `distribution:downloaded` event of one GET: who, which bytes of which file, how."""
    record(
        session,
        EventTag.Distribution.Downloaded,
        actor=user.email,
        subject=f"release:{release.ref}",
        ip=ip,
        user_id=user.id,
        payload={
            "path": path,
            "bytes": byte_range.length,
            "range": [byte_range.start, byte_range.end],
            "size": size,
            "via": via,
            **detail,
            "user_agent": (user_agent or "")[:300],
        },
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
    release = release_by_id(session, link.release_id)
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


def hub_release(
    session: Session,
    secrets: SecretStore,
    namespace: str,
    name: str,
    revision: str,
    user: User | None,
    *,
    card: Callable[[Release], str | None] | None = None,
) -> Release:
    """The release a Hub repo id and revision name: a version, "main" (newest) or our commit.

    Called on every Hub request, so it reads one release with its model, organisation and
    file list, never the tensor index (`sources.file_plan` keeps that per process). `card`
    gives a release's model-card blob id, which its commit folds in (`commit_hash`).
    """
    releases = (
        select(Release)
        .join(Release.model)
        .join(Model.organisation)
        .where(Organisation.slug == namespace, Model.name == name)
        .options(
            contains_eager(Release.model).contains_eager(Model.organisation),
            joinedload(Release.artifacts),  # in the same round trip: a release has few files
        )
    )
    newest = (Release.created_at.desc(), Release.id.desc())
    if revision == "main":
        # A version named "main" first, as for any other name; else the newest release.
        first = (Release.version == revision).desc()
        release = session.scalars(releases.order_by(first, *newest).limit(1)).unique().first()
    else:
        release = session.scalars(releases.where(Release.version == revision)).unique().first()
    if release is None and user is not None and len(revision) == 40:
        for candidate in session.scalars(releases.order_by(*newest)).unique().all():
            oid = card(candidate) if card else None
            if hmac.compare_digest(_commit_of(secrets, candidate.id, user.id, oid), revision):
                release = candidate
                break
    if release is not None:
        return release
    model = session.scalar(
        select(Model.id)
        .join(Model.organisation)
        .where(Organisation.slug == namespace, Model.name == name)
    )
    if model is None:
        raise NotFound(f"no model {namespace}/{name}")
    raise RevisionNotFound(f"{namespace}/{name} has no revision {revision!r}")


class RevisionNotFound(NotFound):
    """A Hub revision that names no release of the model."""

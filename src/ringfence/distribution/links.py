"""Download links: signed with a server key, expiring, limited in uses, bound to one grant.

The URL token is the link's random nonce signed with a purpose-bound key (HMAC through
itsdangerous); it names a row and proves the server made it. Expiry, uses, revocation and the
grant behind it are read from the database on every request, so the token itself never
outlives a decision. itsdangerous errors become TokenInvalid / TokenExpired here.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ringfence.access.models import Grant
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import utcnow
from ringfence.distribution.models import DownloadLink
from ringfence.errors import InvalidInput, NotFound, TokenExpired, TokenInvalid
from ringfence.secrets import SecretStore

DEFAULT_HOURS = 24
DEFAULT_USES = 5
MAX_HOURS = 24 * 30
MAX_USES = 100


def _serializer(secrets: SecretStore) -> URLSafeSerializer:
    return URLSafeSerializer(secrets.derive("distribution:links"), salt="download-link")


@dataclass(frozen=True)
class NewLink:
    """A link just made: `token` goes into the URL `/d/{token}`."""

    link: DownloadLink
    token: str

    def url(self, base_url: str) -> str:
        """The link's page on the server at `base_url`."""
        return f"{base_url.rstrip('/')}/d/{self.token}"


def create_link(
    session: Session,
    secrets: SecretStore,
    grant: Grant,
    release: Release,
    *,
    actor: str,
    hours: int = DEFAULT_HOURS,
    uses: int = DEFAULT_USES,
    ip: str | None = None,
) -> NewLink:
    """A new link for the holder of `grant` (active for `release`: the caller checked it)."""
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidInput(f"hours: give between 1 and {MAX_HOURS} (got {hours})")
    if not 1 <= uses <= MAX_USES:
        raise InvalidInput(f"uses: give between 1 and {MAX_USES} (got {uses})")
    if grant.release_id != release.id:
        raise InvalidInput(f"grant {grant.id} is not for {release.ref}")
    link = DownloadLink(
        nonce=pysecrets.token_hex(16),
        grant_id=grant.id,
        grant_issuance=grant.issuance,
        user_id=grant.user_id,
        release_id=release.id,
        created_by=actor,
        expires_at=utcnow() + timedelta(hours=hours),
        max_uses=uses,
        byte_budget=uses * max(release.total_size, 1),
        bytes_served=0,
        requests=0,
    )
    session.add(link)
    session.flush()
    record(
        session,
        EventTag.Distribution.LinkCreated,
        actor=actor,
        subject=f"release:{release.ref}",
        ip=ip,
        user_id=grant.user_id,
        payload={
            "link_id": link.id,
            "grant_id": grant.id,
            "user_id": grant.user_id,
            "expires_at": link.expires_at.isoformat(),
            "uses": uses,
        },
    )
    return NewLink(link, _serializer(secrets).dumps({"n": link.nonce}))


def read_link(session: Session, secrets: SecretStore, token: str) -> DownloadLink:
    """The live link a URL token names; TokenInvalid or TokenExpired saying why not."""
    try:
        data = _serializer(secrets).loads(token)
    except BadSignature:
        raise TokenInvalid(
            "this download link is not valid: it was altered or was not made by this server",
            hint="ask for a new link on the release page",
        ) from None
    nonce = data.get("n") if isinstance(data, dict) else None
    link = session.scalars(select(DownloadLink).where(DownloadLink.nonce == nonce)).first()
    if link is None:
        raise TokenInvalid("this download link does not exist", hint="ask for a new link")
    if link.revoked_at is not None:
        raise TokenExpired("this download link was revoked", hint="ask for a new link")
    if link.expires_at <= utcnow():
        raise TokenExpired(
            f"this download link expired at {link.expires_at:%Y-%m-%d %H:%M} UTC",
            hint="ask for a new link on the release page",
        )
    if link.bytes_served >= link.byte_budget:
        raise TokenExpired(_used_up(link), hint="ask for a new link on the release page")
    return link


def list_links(session: Session, *, user_id: int | None = None) -> list[DownloadLink]:
    """Links, newest first (one holder's when `user_id` is given)."""
    query = select(DownloadLink).order_by(DownloadLink.id.desc())
    if user_id is not None:
        query = query.where(DownloadLink.user_id == user_id)
    return list(session.scalars(query))


def revoke_link(session: Session, link_id: int, *, reason: str, actor: str) -> DownloadLink:
    """Kill one link at once (its grant stays); revoking twice is a no-op."""
    link = session.get(DownloadLink, link_id)
    if link is None:
        raise NotFound(f"no download link {link_id}", hint="see `ringfence links list`")
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        record(
            session,
            EventTag.Distribution.LinkRevoked,
            actor=actor,
            subject=f"link:{link.id}",
            user_id=link.user_id,
            payload={"grant": link.grant_id, "reason": reason[:500]},
        )
    return link


def revoke_all(session: Session, user_id: int, *, reason: str, actor: str) -> int:
    """Kill every live link of one holder at once (audited as one event); how many."""
    live = list(
        session.scalars(
            select(DownloadLink).where(
                DownloadLink.user_id == user_id, DownloadLink.revoked_at.is_(None)
            )
        )
    )
    for link in live:
        link.revoked_at = utcnow()
    if live:
        record(
            session,
            EventTag.Distribution.LinkRevoked,
            actor=actor,
            subject=f"user:{user_id}",
            user_id=user_id,
            payload={"link_ids": [link.id for link in live], "reason": reason[:500]},
        )
    return len(live)


def _used_up(link: DownloadLink) -> str:
    return f"this download link is used up: it delivered its {link.max_uses} copies of the release"


def charge(session: Session, link: DownloadLink, nbytes: int) -> None:
    """Count `nbytes` against the link's budget atomically, or refuse when it would overrun."""
    result = session.execute(
        update(DownloadLink)
        .where(
            DownloadLink.id == link.id,
            DownloadLink.bytes_served + nbytes <= DownloadLink.byte_budget,
        )
        .values(
            bytes_served=DownloadLink.bytes_served + nbytes,
            requests=DownloadLink.requests + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TokenExpired(_used_up(link), hint="ask for a new link on the release page")
    session.refresh(link)

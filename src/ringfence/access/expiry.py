"""Expiry: grants past their end date and pending requests nobody decided in time.

Each run is one transaction of conditional UPDATEs (`state = 'active'`, `state = 'pending'`)
that return the rows they changed, so when several server processes run it at once each row
expires, is audited and is mailed exactly once: a second process finds nothing left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ringfence.access.models import AccessRequest, Grant
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Model, Release
from ringfence.db import utcnow
from ringfence.errors import InvalidInput
from ringfence.mail import messages
from ringfence.mail import services as mail

#: rows per IN (...) list: below SQLite's bound on query parameters
CHUNK = 900


@dataclass(frozen=True)
class ExpiryRun:
    """What one run expired: grant ids and request ids."""

    grants: list[int]
    requests: list[int]


def check_lifetime(days: int) -> int:
    """A request lifetime in days: at least one."""
    if days < 1:
        raise InvalidInput(f"request lifetime: give at least 1 day (got {days})")
    return days


def _releases(session: Session, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """release id -> (ref, model name, version) for the mails."""
    found: dict[int, tuple[str, str, str]] = {}
    listed = sorted(ids)
    for start in range(0, len(listed), CHUNK):
        rows = session.execute(
            select(Release.id, Model.name, Release.version)
            .join(Model, Release.model_id == Model.id)
            .where(Release.id.in_(listed[start : start + CHUNK]))
        )
        for release_id, name, version in rows:
            found[release_id] = (f"{name}@{version}", name, version)
    return found


def _emails(session: Session, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    listed = sorted(ids)
    for start in range(0, len(listed), CHUNK):
        found.update(
            session.execute(
                select(User.id, User.email).where(User.id.in_(listed[start : start + CHUNK]))
            )
            .tuples()
            .all()
        )
    return found


def expire_grants(
    session: Session, *, now: datetime | None = None, actor: str = "system", base_url: str = ""
) -> list[int]:
    """Mark active grants past their expiry as expired (their requests too); mail the holders."""
    now = now or utcnow()
    rows = session.execute(
        update(Grant)
        .where(Grant.state == "active", Grant.expires_at <= now)
        .values(state="expired")
        .returning(Grant.id, Grant.user_id, Grant.release_id, Grant.request_id)
    ).all()
    if not rows:
        return []
    request_ids = [r.request_id for r in rows if r.request_id is not None]
    for start in range(0, len(request_ids), CHUNK):
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id.in_(request_ids[start : start + CHUNK]))
            .values(state="expired", reason="the grant reached its expiry date", decided_at=now)
        )
    releases = _releases(session, {r.release_id for r in rows})
    emails = _emails(session, {r.user_id for r in rows})
    for row in rows:
        ref, name, version = releases[row.release_id]
        mail.queue(
            session,
            emails[row.user_id],
            messages.grant_expired(release=ref, release_url=f"{base_url}/models/{name}/{version}"),
        )
    ids = sorted(r.id for r in rows)
    record(
        session,
        EventTag.Access.GrantExpired,
        actor=actor,
        subject="grants",
        payload={"grant_ids": ids},
    )
    return ids


def expire_requests(
    session: Session,
    *,
    lifetime_days: int,
    now: datetime | None = None,
    actor: str = "system",
    base_url: str = "",
) -> list[int]:
    """Expire pending requests older than `lifetime_days`; mail the requesters, audit each."""
    now = now or utcnow()
    days = check_lifetime(lifetime_days)
    reason = f"not decided within {days} days"
    rows = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.state == "pending",
            AccessRequest.created_at <= now - timedelta(days=days),
        )
        .values(state="expired", reason=reason, decided_by=actor, decided_at=now)
        .returning(AccessRequest.id, AccessRequest.user_id, AccessRequest.release_id)
    ).all()
    releases = _releases(session, {r.release_id for r in rows})
    emails = _emails(session, {r.user_id for r in rows})
    for row in sorted(rows, key=lambda r: r.id):
        ref, name, version = releases[row.release_id]
        record(
            session,
            EventTag.Access.RequestExpired,
            actor=actor,
            subject=f"release:{ref}",
            payload={"request_id": row.id, "user": emails[row.user_id], "reason": reason},
        )
        mail.queue(
            session,
            emails[row.user_id],
            messages.request_expired(
                release=ref, days=days, release_url=f"{base_url}/models/{name}/{version}"
            ),
        )
    return sorted(r.id for r in rows)


def expire_due(
    session: Session,
    *,
    request_lifetime_days: int,
    now: datetime | None = None,
    actor: str = "system",
    base_url: str = "",
) -> ExpiryRun:
    """Expire what is due now: grants past their end, requests past their lifetime."""
    now = now or utcnow()
    return ExpiryRun(
        grants=expire_grants(session, now=now, actor=actor, base_url=base_url),
        requests=expire_requests(
            session, lifetime_days=request_lifetime_days, now=now, actor=actor, base_url=base_url
        ),
    )

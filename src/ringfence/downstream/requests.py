"""What requesters and reviewers of a gated release are told.

- Reviewers hear of new requests (and appeals): soon after they arrive (`each`, the default),
  as one daily digest (`daily`), or not at all (`off`). `notify_reviewers(services, now)` is a
  plain function run by the server's background pass (and later the job queue).
- A requester sees the timeline of each of their requests rather than a bare state: when it
  was submitted, each decision with its reason, the appeal, the grant and when it ends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from ringfence.access.models import AccessRequest, Grant
from ringfence.accounts.models import User
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.db import transaction
from ringfence.downstream.models import ReviewerNotice
from ringfence.errors import InvalidInput
from ringfence.mail import messages
from ringfence.mail import services as mail
from ringfence.wiring import Services

MODES = ("each", "daily", "off")
DIGEST_EVERY = timedelta(days=1)
REVIEWER_ROLES = ("admin", "reviewer")


def notice_mode(session: Session, user: User) -> str:
    """How `user` hears of new requests."""
    row = session.get(ReviewerNotice, user.id)
    return row.mode if row else "each"


def set_notice_mode(session: Session, user: User, mode: str) -> None:
    """Choose each, daily or off."""
    if mode not in MODES:
        raise InvalidInput(f"mode: use one of {', '.join(MODES)}")
    row = session.get(ReviewerNotice, user.id)
    if row is None:
        row = ReviewerNotice(user_id=user.id, last_sent_at=None)
        session.add(row)
    row.mode = mode


def _arrived(session: Session, since: datetime | None) -> list[AccessRequest]:
    query = (
        select(AccessRequest)
        .where(AccessRequest.state == "pending")
        .options(selectinload(AccessRequest.release))
    )
    if since is not None:
        query = query.where(
            or_(AccessRequest.created_at > since, AccessRequest.appealed_at > since)
        )
    return list(session.scalars(query))


def notify_reviewers(services: Services, now: datetime | None = None) -> int:
    """Mail each reviewer who is due one about the requests that arrived since; how many."""
    now = now or services.clock()
    sent = 0
    with transaction(services.sessions) as session:
        reviewers = session.scalars(
            select(User).where(User.role.in_(REVIEWER_ROLES), User.is_active.is_(True))
        ).all()
        for reviewer in reviewers:
            row = session.get(ReviewerNotice, reviewer.id)
            if row is None:
                row = ReviewerNotice(user_id=reviewer.id, mode="each", last_sent_at=None)
                session.add(row)
            if row.mode == "off":
                continue
            if row.mode == "daily" and row.last_sent_at and now - row.last_sent_at < DIGEST_EVERY:
                continue
            waiting = _arrived(session, row.last_sent_at)
            if not waiting:
                continue
            per_release = Counter(r.release.ref for r in waiting)
            mail.queue(
                session,
                reviewer.email,
                messages.requests_waiting(
                    count=len(waiting),
                    releases=sorted(per_release.items()),
                    digest=row.mode == "daily",
                    base_url=services.settings.base_url,
                ),
            )
            row.last_sent_at = now
            sent += 1
    if sent:
        services.mailer.deliver_pending(services.sessions)
    return sent


@dataclass(frozen=True)
class Step:
    """One moment in a request's life."""

    at: datetime
    what: str  # submitted, approved, rejected, appealed, revoked, expired, grant ends
    detail: str = ""


@dataclass(frozen=True)
class Timeline:
    """A request and its steps, oldest first, with what the requester may do next."""

    request: AccessRequest
    steps: list[Step]
    next_step: str


_DECISIONS = {
    str(EventTag.Access.RequestSubmitted): "submitted",
    str(EventTag.Access.RequestApproved): "approved",
    str(EventTag.Access.RequestRejected): "rejected",
    str(EventTag.Access.RequestAppealed): "appealed",
    str(EventTag.Access.RequestRevoked): "revoked",
    str(EventTag.Access.RequestExpired): "expired",
}


def _mentions(payload: dict[str, object], request_id: int) -> bool:
    ids = payload.get("request_ids")
    return payload.get("request_id") == request_id or (isinstance(ids, list) and request_id in ids)


def timeline(session: Session, req: AccessRequest, *, lifetime_days: int) -> Timeline:
    """The steps of `req` from the audit log (each decision's reason as the requester reads it)."""
    events = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.subject == f"release:{req.release.ref}",
            AuditEvent.tag.in_(list(_DECISIONS)),
            AuditEvent.created_at >= req.created_at - timedelta(seconds=1),
        )
        .order_by(AuditEvent.seq)
    ).all()
    steps: list[Step] = []
    for event in events:
        payload = event.payload or {}
        if not _mentions(payload, req.id):
            continue
        what = _DECISIONS[event.tag]
        detail = str(payload.get("reason") or payload.get("appeal") or "")
        steps.append(Step(event.created_at, what, detail))
    grant = session.scalars(select(Grant).where(Grant.request_id == req.id)).first()
    if grant is not None and grant.state == "active":
        steps.append(Step(grant.expires_at, "grant ends", "ask again before then to keep access"))
    next_step = {
        "pending": "a reviewer will decide; the request lapses on "
        + (req.created_at + timedelta(days=lifetime_days)).strftime("%Y-%m-%d"),
        "approved": "download it from the release's page",
        "rejected": "you may appeal once" if req.appeal is None else "the decision is final",
        "expired": "you may ask again",
        "revoked": "you may ask again if the release widens",
    }.get(req.state, "")
    return Timeline(req, steps, next_step)


def timelines(session: Session, user: User, *, lifetime_days: int) -> list[Timeline]:
    """Every request of `user`, newest first, with its timeline."""
    requests = session.scalars(
        select(AccessRequest)
        .where(AccessRequest.user_id == user.id)
        .options(selectinload(AccessRequest.release))
        .order_by(AccessRequest.created_at.desc())
    ).all()
    return [timeline(session, r, lifetime_days=lifetime_days) for r in requests]

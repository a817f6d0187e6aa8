"""The audit log page for admins, and the audit part of the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.access.models import User
from ringfence.access.web_common import render, require_page_role
from ringfence.audit import services as audit
from ringfence.audit.models import AuditEvent
from ringfence.errors import InvalidInput
from ringfence.web.deps import db_session
from ringfence.web.security import require_role, require_user

router = APIRouter()
PAGE = 100


def query_events(
    session: Session,
    *,
    tag: str = "",
    actor: str = "",
    subject: str = "",
    before: int | None = None,
    limit: int = PAGE,
) -> list[AuditEvent]:
    """The newest events first; `tag` matches a whole tag or an `area[:subject]` prefix."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit: give 1 to 1000")
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if tag.strip():
        t = tag.strip()
        query = query.where((AuditEvent.tag == t) | AuditEvent.tag.startswith(t.rstrip(":") + ":"))
    if actor.strip():
        query = query.where(AuditEvent.actor == actor.strip().lower())
    if subject.strip():
        query = query.where(AuditEvent.subject.contains(subject.strip()))
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    return list(session.scalars(query))


def event_row(event: AuditEvent) -> dict[str, Any]:
    """An event as one flat record."""
    return {
        "seq": event.seq,
        "at": event.created_at.isoformat(timespec="seconds"),
        "tag": event.tag,
        "actor": event.actor,
        "subject": event.subject,
        "ip": event.ip,
        "payload": event.payload,
        "hash": event.hash,
    }


@router.get("/admin/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    tag: str = "",
    actor: str = "",
    subject: str = "",
    before: int | None = None,
    user: User = Depends(require_user()),
    session: Session = Depends(db_session),
) -> Response:
    """Events, newest first, filtered by tag prefix, actor and subject; chain status on top."""
    require_page_role(user, "admin")
    events = query_events(session, tag=tag, actor=actor, subject=subject, before=before)
    return render(
        request,
        "audit/events.html",
        {
            "events": events,
            "filters": {"tag": tag, "actor": actor, "subject": subject},
            "chain": audit.verify(session),
            "older": events[-1].seq if len(events) == PAGE else None,
        },
    )


@router.get("/api/v1/audit/events", tags=["audit"])
def api_events(
    tag: str = "",
    actor: str = "",
    subject: str = "",
    before: int | None = None,
    limit: int = PAGE,
    user: User = Depends(require_role("admin")),
    session: Session = Depends(db_session),
) -> list[dict[str, Any]]:
    """Events, newest first (admin)."""
    return [
        event_row(e)
        for e in query_events(
            session, tag=tag, actor=actor, subject=subject, before=before, limit=limit
        )
    ]


@router.get("/api/v1/audit/verify", tags=["audit"])
def api_verify(
    user: User = Depends(require_role("admin")), session: Session = Depends(db_session)
) -> dict[str, Any]:
    """Recompute the chain (admin)."""
    report = audit.verify(session)
    return {
        "ok": report.ok,
        "events": report.events,
        "broken_seq": report.broken_seq,
        "reason": report.reason,
    }

"""The audit log page for admins, and the audit part of the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.audit import services as audit
from ringfence.web.deps import db_session
from ringfence.web.pages import render
from ringfence.web.params import Cursor, Limit
from ringfence.web.security import Permission, api_user, page_user

router = APIRouter()


@router.get("/admin/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    tag: str = "",
    actor: str = "",
    subject: str = "",
    before: Cursor = None,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Events, newest first, filtered by tag prefix, actor and subject; chain status on top."""
    events = audit.query_events(session, tag=tag, actor=actor, subject=subject, before=before)
    return render(
        request,
        "audit/events.html",
        {
            "events": events,
            "filters": {"tag": tag, "actor": actor, "subject": subject},
            "chain": audit.verify(session),
            "older": events[-1].seq if len(events) == audit.PAGE else None,
        },
    )


@router.get("/api/v1/audit/events", tags=["audit"])
def api_events(
    tag: str = "",
    actor: str = "",
    subject: str = "",
    before: Cursor = None,
    limit: Limit = audit.PAGE,
    user: User = Depends(api_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> list[dict[str, Any]]:
    """Events, newest first (admin)."""
    return [
        audit.event_row(e)
        for e in audit.query_events(
            session, tag=tag, actor=actor, subject=subject, before=before, limit=limit
        )
    ]


@router.get("/api/v1/audit/verify", tags=["audit"])
def api_verify(
    user: User = Depends(api_user(Permission.ADMIN)), session: Session = Depends(db_session)
) -> dict[str, Any]:
    """Recompute the chain (admin)."""
    report = audit.verify(session)
    return {
        "ok": report.ok,
        "events": report.events,
        "broken_seq": report.broken_seq,
        "reason": report.reason,
    }

"""Browser sessions: a random cookie value per signed-in browser, stored as its sha256.

`ringfence.accounts.services` re-exports these, so callers keep one import place.
"""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.accounts.models import User, WebSession
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow

SESSION_LIFETIME = timedelta(days=14)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def start_session(session: Session, user: User, *, ip: str | None, user_agent: str | None) -> str:
    """A new browser session; returns the raw cookie value (only its hash is stored)."""
    raw = pysecrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=_digest(raw),
            user_id=user.id,
            expires_at=utcnow() + SESSION_LIFETIME,
            ip=ip,
            user_agent=(user_agent or "")[:512],
        )
    )
    session.flush()
    return raw


def user_from_session(session: Session, raw: str) -> User | None:
    """The active user a session cookie belongs to, or None when unknown or expired."""
    if not raw or len(raw) > 128:
        return None
    row = session.scalars(select(WebSession).where(WebSession.token_hash == _digest(raw))).first()
    if row is None or row.expires_at <= utcnow() or not row.user.is_active:
        return None
    return row.user


def end_session(session: Session, raw: str, *, ip: str | None) -> None:
    """Sign a browser out: its session row is deleted."""
    row = session.scalars(select(WebSession).where(WebSession.token_hash == _digest(raw))).first()
    if row is not None:
        record(
            session,
            EventTag.Account.LoggedOut,
            actor=row.user.email,
            subject=f"user:{row.user.email}",
            ip=ip,
        )
        session.delete(row)

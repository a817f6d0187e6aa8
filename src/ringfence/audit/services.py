"""Writing and verifying the hash-chained audit log, through one function each."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import TAG_CLASSES, AuditTag
from ringfence.db import utcnow
from ringfence.errors import InvalidInput

GENESIS = "0" * 64


def _digest(
    prev_hash: str,
    seq: int,
    tag: str,
    actor: str,
    subject: str,
    ip: str | None,
    payload: dict[str, Any],
    created_at: datetime,
    user_id: int | None = None,
) -> str:
    content: dict[str, Any] = {
        "prev": prev_hash,
        "seq": seq,
        "tag": tag,
        "actor": actor,
        "subject": subject,
        "ip": ip,
        "payload": payload,
        "at": created_at.isoformat(timespec="microseconds"),
    }
    # The user is chained content, but only where there is one: every event written before
    # the column existed (migration 0009), or without a user since, hashes as it always did.
    if user_id is not None:
        content["user"] = user_id
    body = json.dumps(
        content,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _serialise_writers(session: Session) -> None:
    """Hold the database's write lock before reading the chain's head, so it never forks.

    Both locks last until the caller's transaction ends. PostgreSQL: a transaction-scoped
    advisory lock. SQLite: a write that matches no row still takes the database's write lock
    (waiting up to the busy timeout), and once a transaction holds it, its reads see every
    committed event, so two writers can never read the same head.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7261636)"))
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit_events SET seq = seq WHERE id < 0"))


def record(
    session: Session,
    tag: AuditTag,
    *,
    actor: str,
    subject: str,
    payload: dict[str, Any] | None = None,
    ip: str | None = None,
    user_id: int | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or vanishes with the decision).

    `user_id` names the user the event concerns (chained with the rest), so that evidence
    about a person is found by id (`events_about`).
    """
    if not isinstance(tag, TAG_CLASSES):
        raise TypeError(f"audit tags come from ringfence.audit.tags.EventTag, not {tag!r}")
    # The stored value is the plain string (database drivers may write an enum by its name).
    value = str(tag.value)
    payload = json.loads(json.dumps(payload or {}, default=str))
    _serialise_writers(session)
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)
    last = session.scalars(query).first()
    prev_hash = last.hash if last else GENESIS
    seq = (last.seq + 1) if last else 1
    created_at = utcnow()
    event = AuditEvent(
        seq=seq,
        tag=value,
        actor=actor,
        subject=subject,
        ip=ip,
        payload=payload,
        user_id=user_id,
        created_at=created_at,
        prev_hash=prev_hash,
        hash=_digest(prev_hash, seq, value, actor, subject, ip, payload, created_at, user_id),
    )
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainReport:
    """What verifying the chain found: how many events, and the first broken one if any."""

    events: int
    broken_seq: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def verify(session: Session) -> ChainReport:
    """Recompute every hash in order; name the first event that does not fit its chain."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        count += 1
        if event.seq != expected_seq:
            return ChainReport(count, event.seq, f"event {expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return ChainReport(count, event.seq, "its link to the previous event is broken")
        digest = _digest(
            event.prev_hash,
            event.seq,
            event.tag,
            event.actor,
            event.subject,
            event.ip,
            event.payload,
            event.created_at,
            event.user_id,
        )
        if digest != event.hash:
            return ChainReport(count, event.seq, "its content does not match its hash")
        prev_hash = event.hash
        expected_seq += 1
    return ChainReport(count, None, None)


#: events on one page of the audit log
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


def events_about(session: Session, user_id: int, *, limit: int = 200) -> list[AuditEvent]:
    """The events recorded as concerning one user, oldest first (an indexed lookup)."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.user_id == user_id)
        .order_by(AuditEvent.seq)
        .limit(limit)
    )
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
        "user_id": event.user_id,
        "hash": event.hash,
    }

"""Which audit events become webhook messages, and what a message may say.

Every decision ringfence makes is already an audit event written in the decision's
transaction (`ringfence.audit.services.record`), so webhooks follow the audit log rather than
each area calling them: a `before_flush` listener sees each new `AuditEvent`, and a
subscription that wants its type gets a `Delivery` row in the same flush. A rolled-back
decision thus announces nothing, and a committed one is never lost (the row is the queue).

A message carries counts and circles, never people: a webhook receiver is another system,
and the requester's address is not its business (the lab's own reviewers read it here).
"""

from __future__ import annotations

import json
import secrets as pysecrets
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, event, or_, select
from sqlalchemy.orm import Session

from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Model, Release
from ringfence.webhooks.models import Delivery, Subscription

#: audit tag -> webhook event type (Standard Webhooks' dotted `type`)
EVENT_TYPES: dict[str, str] = {
    EventTag.Access.RequestSubmitted: "access.requested",
    EventTag.Access.RequestApproved: "access.approved",
    EventTag.Access.RequestRejected: "access.rejected",
    EventTag.Access.RequestRevoked: "access.revoked",
    EventTag.Access.GrantRevoked: "access.revoked",
    EventTag.Access.CircleChanged: "circle.changed",
    EventTag.Access.ReleaseLicenceChanged: "licence.changed",
    EventTag.Tracing.TraceRun: "trace.completed",
}
#: every event type a subscription may ask for
ALL_TYPES = tuple(sorted(set(EVENT_TYPES.values())))
#: what someone outside the lab (a derivative's owner) may subscribe to: what happens to the
#: release itself, not who asked for it or whose copy a trace found
OUTSIDE_TYPES = ("circle.changed", "licence.changed")
#: payload keys a message may carry, per event type (counts and circles, never addresses)
_KEEP: dict[str, tuple[str, ...]] = {
    "circle.changed": ("from", "to", "reason", "revoked"),
    "licence.changed": ("from", "to", "licence"),
    "access.requested": ("request_id", "via"),
    "access.approved": ("request_id",),
    "access.rejected": ("request_id",),
    "access.revoked": ("request_ids", "grant_id", "reason"),
    "trace.completed": ("exact_match", "recipients_scored"),
}


def message_body(event_type: str, audit: AuditEvent, release: str | None) -> str:
    """The JSON body of a message, as Standard Webhooks shapes it: type, timestamp, data."""
    payload = audit.payload or {}
    data: dict[str, Any] = {k: payload[k] for k in _KEEP.get(event_type, ()) if k in payload}
    if event_type == "trace.completed":
        data["accused"] = len(payload.get("accused") or [])  # how many, never whom
    data["release"] = release
    data["audit_seq"] = audit.seq
    at: datetime = audit.created_at
    return json.dumps(
        {"type": event_type, "timestamp": at.isoformat(), "data": data},
        sort_keys=True,
        separators=(",", ":"),
    )


def _release_of(session: Session, subject: str) -> Release | None:
    if not subject.startswith("release:") or "@" not in subject:
        return None
    name, _, version = subject.removeprefix("release:").rpartition("@")
    return session.scalars(
        select(Release).join(Model).where(Model.name == name, Release.version == version)
    ).first()


def enqueue(session: Session, audit: AuditEvent) -> int:
    """Queue one delivery per active subscription that wants this audit event; how many."""
    event_type = EVENT_TYPES.get(audit.tag)
    if event_type is None:
        return 0
    release = _release_of(session, audit.subject)
    scope: ColumnElement[bool] = Subscription.release_id.is_(None)
    if release is not None:
        scope = or_(scope, Subscription.release_id == release.id)
    subscriptions = session.scalars(
        select(Subscription).where(Subscription.active.is_(True), scope).order_by(Subscription.id)
    ).all()
    body = message_body(event_type, audit, release.ref if release else None)
    count = 0
    for subscription in subscriptions:
        if event_type not in subscription.events:
            continue
        session.add(
            Delivery(
                subscription_id=subscription.id,
                message_id=f"msg_{pysecrets.token_hex(16)}",
                event=event_type,
                body=body,
                next_attempt_at=audit.created_at,
            )
        )
        count += 1
    return count


@event.listens_for(Session, "before_flush")
def _audit_to_webhooks(session: Session, flush_context: Any, instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, AuditEvent) and obj.tag in EVENT_TYPES]
    if not new:
        return
    with session.no_autoflush:  # the lookups must not flush the half-built unit of work
        for audit in new:
            enqueue(session, audit)

"""The records an accusation rests on: each accused recipient's grants, licence acceptances
and audit events, attached to a trace's result for the report and the evidence pack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.audit.models import AuditEvent
from ringfence.audit.services import events_about

if TYPE_CHECKING:
    from ringfence.tracing.services import TraceResult


def attach_records(session: Session, result: TraceResult) -> None:
    """Each accused recipient's grants, licence acceptances and audit events (downloads)."""
    from ringfence.access.models import Grant, LicenceAcceptance
    from ringfence.accounts.models import User

    for accused in result.accused:
        email = accused.recipient
        user = session.scalars(select(User).where(User.email == email)).first()
        records: list[dict[str, Any]] = []
        if user is not None:
            for g in session.scalars(select(Grant).where(Grant.user_id == user.id)):
                records.append(
                    {
                        "kind": "grant",
                        "at": g.created_at.isoformat(),
                        "detail": f"grant #{g.id} for release {g.release_id}: {g.state} "
                        f"(by {g.granted_by}, expires {g.expires_at:%Y-%m-%d})",
                    }
                )
            for a in session.scalars(
                select(LicenceAcceptance).where(LicenceAcceptance.user_id == user.id)
            ):
                records.append(
                    {
                        "kind": "licence acceptance",
                        "at": a.accepted_at.isoformat(),
                        "detail": f"{a.licence_ref} (text sha256 {a.text_sha256[:12]}) "
                        f"from {a.ip or '?'}",
                    }
                )
        for e in _events_about(session, None if user is None else user.id, email):
            records.append(
                {
                    "kind": e.tag,
                    "at": e.created_at.isoformat(),
                    "detail": f"#{e.seq} by {e.actor} on {e.subject}",
                }
            )
        result.records[email] = sorted(records, key=lambda r: r["at"])


def _events_about(session: Session, user_id: int | None, email: str) -> list[AuditEvent]:
    """The audit events about one recipient: by account id, never by a piece of an address.

    A recipient without an account (a copy made for an address) has only the fingerprint
    area's events, which name her by her whole address.
    """
    if user_id is not None:
        return events_about(session, user_id)
    return list(
        session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.tag.startswith("fingerprint:"),
                AuditEvent.payload["recipient"].as_string() == email,
            )
            .order_by(AuditEvent.seq)
            .limit(200)
        )
    )

"""What an incident does through other areas, and the checks every incident change shares.

Revoking an implicated grant and narrowing the release go through the access area's own
services (which record their own events); `record_action` adds the incident's side: an
`incident:action-taken` event and an `IncidentAction` row pointing at it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ringfence.access.circles import check_circle, rank, set_circle
from ringfence.access.grants import get_grant, revoke_grant
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.errors import Conflict, InvalidInput
from ringfence.incidents.models import Incident, IncidentAction


def subject_of(incident: Incident) -> str:
    """The audit subject of an incident: `incident:N`."""
    return f"incident:{incident.id}"


def check_text(value: str, name: str, *, limit: int, required: bool = False) -> str:
    """A stripped text field, refused when required and empty, too long or holding NUL."""
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{name}: give a value")
    if len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{name}: at most {limit} characters, no NUL")
    return value


def require_open(incident: Incident) -> None:
    """Refuse a change to a closed incident."""
    if incident.state != "open":
        raise Conflict(f"incident {incident.id} is closed", hint="open a new incident")


def record_action(
    session: Session,
    incident: Incident,
    kind: str,
    detail: dict[str, Any],
    *,
    actor: str,
    ip: str | None,
) -> IncidentAction:
    """Record an action the incident took (its audit event and its row)."""
    event = record(
        session,
        EventTag.Incident.ActionTaken,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={"action": kind, **detail},
    )
    action = IncidentAction(
        incident_id=incident.id, kind=kind, detail=detail, actor=actor, audit_seq=event.seq
    )
    session.add(action)
    session.flush()
    return action


def revoke_implicated_grant(
    session: Session,
    incident: Incident,
    grant_id: int,
    *,
    reason: str,
    actor: str,
    ip: str | None = None,
) -> IncidentAction:
    """Revoke a grant the evidence implicates; the incident records the action."""
    require_open(incident)
    reason = check_text(reason, "reason", limit=2000, required=True)
    grant = get_grant(session, grant_id)
    if incident.release_id is not None and grant.release_id != incident.release_id:
        raise InvalidInput(f"grant {grant_id} is not for this incident's release")
    if grant.state != "active":
        raise Conflict(f"grant {grant_id} is {grant.state}, not active")
    revoke_grant(session, grant, reason=f"incident {incident.id}: {reason}", actor=actor, ip=ip)
    return record_action(
        session,
        incident,
        "grant_revoked",
        {"grant_id": grant.id, "user": grant.user.email, "reason": reason},
        actor=actor,
        ip=ip,
    )


def narrow_circle(
    session: Session,
    incident: Incident,
    circle: str,
    *,
    reason: str,
    actor: str,
    ip: str | None = None,
) -> IncidentAction:
    """Narrow the incident's release to `circle` (never wider); the incident records it."""
    require_open(incident)
    reason = check_text(reason, "reason", limit=2000, required=True)
    check_circle(circle)
    release = release_of(incident)
    if rank(circle) >= rank(release.circle):
        raise InvalidInput(
            f"{release.ref} is in the {release.circle} circle; an incident only narrows it"
        )
    change = set_circle(
        session, release, circle, reason=f"incident {incident.id}: {reason}", actor=actor, ip=ip
    )
    return record_action(
        session,
        incident,
        "circle_narrowed",
        {
            "release": release.ref,
            "from": change.before,
            "to": change.after,
            "revoked": change.revoked,
        },
        actor=actor,
        ip=ip,
    )


def release_of(incident: Incident) -> Release:
    """The incident's release, or a clear refusal while it names none."""
    if incident.release is None:
        raise InvalidInput(
            f"incident {incident.id} names no release yet",
            hint="trace a suspect file or attribute the endpoint first",
        )
    return incident.release

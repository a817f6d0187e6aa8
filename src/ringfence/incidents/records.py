"""Incidents as records: what the pages, the API, the CLI and the evidence pack show."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.audit.models import AuditEvent
from ringfence.incidents.actions import subject_of
from ringfence.incidents.custody import verify_custody
from ringfence.incidents.models import Evidence, Incident, IncidentAction


def incident_record(incident: Incident) -> dict[str, Any]:
    """An incident as one flat record (the API and the CLI show the same fields)."""
    return {
        "id": incident.id,
        "state": incident.state,
        "kind": incident.kind,
        "source": incident.source,
        "release": incident.release.ref if incident.release else None,
        "holds_widening": incident.holds_widening,
        "opened_by": incident.opened_by,
        "opened_at": incident.opened_at.isoformat(timespec="seconds"),
        "closed_at": incident.closed_at.isoformat(timespec="seconds")
        if incident.closed_at
        else None,
    }


def evidence_record(evidence: Evidence) -> dict[str, Any]:
    """A piece of evidence with its chain of custody."""
    return {
        "id": evidence.id,
        "kind": evidence.kind,
        "name": evidence.name,
        "sha256": evidence.sha256,
        "size": evidence.size,
        "added_by": evidence.added_by,
        "added_at": evidence.added_at.isoformat(timespec="seconds"),
        "payload": evidence.payload,
        "custody_intact": verify_custody(evidence),
        "custody": [
            {
                "step": s.step,
                "actor": s.actor,
                "ip": s.ip,
                "at": s.at.isoformat(timespec="seconds"),
                "sha256": s.sha256,
                "chain": s.chain,
            }
            for s in evidence.custody
        ],
    }


def action_record(action: IncidentAction) -> dict[str, Any]:
    """An action as one flat record."""
    return {
        "id": action.id,
        "kind": action.kind,
        "detail": action.detail,
        "actor": action.actor,
        "at": action.at.isoformat(timespec="seconds"),
        "audit_seq": action.audit_seq,
    }


def implicated(session: Session, incident: Incident) -> list[dict[str, Any]]:
    """The recipients the traces accuse, with their grants for the release (for actions)."""
    from ringfence.access.grants import grant_record
    from ringfence.access.models import Grant
    from ringfence.accounts.models import User

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ev in incident.evidence:
        if ev.kind != "trace":
            continue
        for accused in ev.payload.get("accused", []):
            email = str(accused["recipient"])
            if email in seen:
                continue
            seen.add(email)
            user = session.scalars(select(User).where(User.email == email)).first()
            grants = []
            if user is not None:
                query = select(Grant).where(Grant.user_id == user.id)
                if incident.release_id is not None:
                    query = query.where(Grant.release_id == incident.release_id)
                grants = [grant_record(g) for g in session.scalars(query.order_by(Grant.id))]
            out.append(
                {
                    "recipient": email,
                    "p_value": accused.get("p_value"),
                    "grants": grants,
                    "records": ev.payload.get("records", {}).get(email, []),
                }
            )
    return out


def audit_excerpt(session: Session, incident: Incident) -> list[AuditEvent]:
    """The audit events about this incident, and those its traces and actions point at."""
    seqs = {a.audit_seq for a in incident.actions if a.audit_seq is not None}
    seqs |= {
        int(e.payload["trace_audit_seq"])
        for e in incident.evidence
        if e.kind == "trace" and e.payload.get("trace_audit_seq") is not None
    }
    query = select(AuditEvent).where(
        (AuditEvent.subject == subject_of(incident)) | AuditEvent.seq.in_(sorted(seqs))
    )
    return list(session.scalars(query.order_by(AuditEvent.seq)))


def show(session: Session, incident: Incident) -> dict[str, Any]:
    """Everything the incident page and `ringfence incident show --json` hold."""
    return {
        **incident_record(incident),
        "summary": incident.summary,
        "resolution": incident.resolution,
        "evidence": [evidence_record(e) for e in incident.evidence],
        "implicated": implicated(session, incident),
        "actions": [action_record(a) for a in incident.actions],
        "notice_sent_to": incident.notice_sent_to,
        "notice_sent_at": incident.notice_sent_at.isoformat(timespec="seconds")
        if incident.notice_sent_at
        else None,
    }

"""The incidents part of the JSON API (admin tokens): the same records as the CLI's --json."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.incidents import notice, pack
from ringfence.incidents import services as incidents
from ringfence.incidents.uploads import saved_upload
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver
from ringfence.web.security import Permission, api_user, client_ip

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
ADMIN = Depends(api_user(Permission.ADMIN))


class IncidentIn(BaseModel):
    """A leak report."""

    kind: str
    source: str
    summary: str = ""
    release: str | None = None
    holds_widening: bool = True


class RevokeIn(BaseModel):
    grant_id: int
    reason: str


class NarrowIn(BaseModel):
    circle: str
    reason: str


class NoticeIn(BaseModel):
    text: str = Field(max_length=notice.MAX_NOTICE)


class SendIn(BaseModel):
    to: str


class AttributeIn(BaseModel):
    """An endpoint to test: its base URL (…/v1), the model name it serves, a key to call it."""

    endpoint: str
    model: str
    api_key: str = ""
    release: str | None = None
    budget: int = 32
    alpha: float = 0.01
    mode: str = "auto"


class CloseIn(BaseModel):
    resolution: str


@router.get("")
def list_incidents(
    state: str = "", user: User = ADMIN, session: Session = Depends(db_session)
) -> list[dict[str, Any]]:
    """Incidents, newest first (admin)."""
    return [incidents.incident_record(i) for i in incidents.list_incidents(session, state=state)]


@router.post("", status_code=201)
def open_incident(
    body: IncidentIn, request: Request, user: User = ADMIN, session: Session = Depends(db_session)
) -> dict[str, Any]:
    """Open an incident from a leak report: a file, a URL or an endpoint (admin)."""
    incident = incidents.open_incident(
        session,
        kind=body.kind,
        source=body.source,
        summary=body.summary,
        release_ref=body.release,
        holds_widening=body.holds_widening,
        actor=user.email,
        ip=client_ip(request),
    )
    session.commit()
    return incidents.incident_record(incident)


@router.get("/{incident_id}")
def show(
    incident_id: int, user: User = ADMIN, session: Session = Depends(db_session)
) -> dict[str, Any]:
    """The incident with its evidence, custody, implicated recipients and actions (admin)."""
    return incidents.show(session, incidents.get_incident(session, incident_id))


@router.post("/{incident_id}/trace")
def trace(
    incident_id: int,
    request: Request,
    suspect: UploadFile = File(...),
    release: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Record a suspect file, trace it and attach the report (admin)."""
    incident = incidents.get_incident(session, incident_id)
    with saved_upload(suspect) as path:
        evidence, _ = incidents.trace_suspect(
            get_services(request),
            session,
            incident,
            [path],
            release_ref=release.strip() or None,
            actor=user.email,
            ip=client_ip(request),
        )
    session.commit()
    return incidents.evidence_record(evidence)


@router.post("/{incident_id}/attribute")
def attribute(
    incident_id: int,
    body: AttributeIn,
    request: Request,
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Test whether an OpenAI-compatible endpoint serves the release; attach the report (admin)."""
    evidence = incidents.attribute_endpoint(
        get_services(request),
        session,
        incidents.get_incident(session, incident_id),
        endpoint=body.endpoint,
        model=body.model,
        api_key=body.api_key,
        release_ref=body.release,
        budget=body.budget,
        alpha=body.alpha,
        mode=body.mode,
        actor=user.email,
        ip=client_ip(request),
    )
    session.commit()
    return incidents.evidence_record(evidence)


@router.post("/{incident_id}/revoke-grant")
def revoke_grant(
    incident_id: int,
    body: RevokeIn,
    request: Request,
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Revoke an implicated recipient's grant (admin)."""
    action = incidents.revoke_implicated_grant(
        session,
        incidents.get_incident(session, incident_id),
        body.grant_id,
        reason=body.reason,
        actor=user.email,
        ip=client_ip(request),
    )
    commit_and_deliver(request, session)
    return incidents.action_record(action)


@router.post("/{incident_id}/narrow")
def narrow(
    incident_id: int,
    body: NarrowIn,
    request: Request,
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Narrow the incident's release to a smaller circle (admin)."""
    action = incidents.narrow_circle(
        session,
        incidents.get_incident(session, incident_id),
        body.circle,
        reason=body.reason,
        actor=user.email,
        ip=client_ip(request),
    )
    commit_and_deliver(request, session)
    return incidents.action_record(action)


@router.post("/{incident_id}/notice", response_class=PlainTextResponse)
def draft_notice(
    incident_id: int, request: Request, user: User = ADMIN, session: Session = Depends(db_session)
) -> str:
    """Draft the takedown notice from the evidence; answers its text (admin)."""
    incident = incidents.get_incident(session, incident_id)
    text = notice.draft(session, incident, get_services(request).settings, actor=user.email)
    session.commit()
    return text


@router.put("/{incident_id}/notice", response_class=PlainTextResponse)
def edit_notice(
    incident_id: int,
    body: NoticeIn,
    request: Request,
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> str:
    """Replace the notice's text (admin)."""
    incident = incidents.get_incident(session, incident_id)
    text = notice.edit(session, incident, body.text, actor=user.email, ip=client_ip(request))
    session.commit()
    return text


@router.get("/{incident_id}/notice", response_class=PlainTextResponse)
def get_notice(
    incident_id: int,
    format: str = "txt",
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """The notice as text (`?format=txt`) or a printable page (`?format=html`) (admin)."""
    incident = incidents.get_incident(session, incident_id)
    if format == "html":
        return Response(notice.notice_html(incident), media_type="text/html")
    return PlainTextResponse(incident.notice)


@router.post("/{incident_id}/notice/send")
def send_notice(
    incident_id: int,
    body: SendIn,
    request: Request,
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Send the notice to an abuse address; the sending is recorded (admin)."""
    incident = incidents.get_incident(session, incident_id)
    action = notice.send(session, incident, body.to, actor=user.email, ip=client_ip(request))
    commit_and_deliver(request, session)
    return incidents.action_record(action)


@router.post("/{incident_id}/pack")
def export_pack(
    incident_id: int, request: Request, user: User = ADMIN, session: Session = Depends(db_session)
) -> Response:
    """The signed evidence archive (zip); verify it offline with `ringfence verify` (admin)."""
    incident = incidents.get_incident(session, incident_id)
    data = pack.export(
        session, get_services(request).secrets, incident, actor=user.email, ip=client_ip(request)
    )
    session.commit()
    return Response(data, media_type="application/zip")


@router.post("/{incident_id}/close")
def close(
    incident_id: int,
    body: CloseIn,
    request: Request,
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Close the incident; its hold on widening ends (admin)."""
    incident = incidents.close_incident(
        session,
        incidents.get_incident(session, incident_id),
        resolution=body.resolution,
        actor=user.email,
        ip=client_ip(request),
    )
    session.commit()
    return incidents.incident_record(incident)

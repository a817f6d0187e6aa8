"""Admin pages: the incidents list, one incident with its evidence pack, actions and notice."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.catalogue.services import list_releases
from ringfence.incidents import notice, pack
from ringfence.incidents import services as incidents
from ringfence.incidents.models import KINDS
from ringfence.incidents.uploads import saved_upload
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver, redirect, render
from ringfence.web.security import Permission, client_ip, page_user, verify_csrf

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]
ADMIN = Depends(page_user(Permission.ADMIN))


def _page(incident_id: int) -> str:
    return f"/admin/incidents/{incident_id}"


@router.get("/admin/incidents", response_class=HTMLResponse)
def list_page(
    request: Request, state: str = "", user: User = ADMIN, session: Session = Depends(db_session)
) -> Response:
    """Every incident, newest first, and the form that opens one."""
    return render(
        request,
        "incidents/list.html",
        {
            "incidents": [
                incidents.incident_record(i) for i in incidents.list_incidents(session, state=state)
            ],
            "kinds": KINDS,
            "releases": list_releases(session),
        },
    )


@router.post("/admin/incidents", dependencies=CSRF)
def open_incident(
    request: Request,
    kind: str = Form(""),
    source: str = Form(""),
    summary: str = Form(""),
    release: str = Form(""),
    hold: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Open an incident from a leak report."""
    incident = incidents.open_incident(
        session,
        kind=kind,
        source=source,
        summary=summary,
        release_ref=release.strip() or None,
        holds_widening=bool(hold),
        actor=user.email,
        ip=client_ip(request),
    )
    session.commit()
    return redirect(_page(incident.id), "saved")


@router.get("/admin/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request, incident_id: int, user: User = ADMIN, session: Session = Depends(db_session)
) -> Response:
    """The incident and its evidence pack: reports, hashes, custody, recipients, actions."""
    incident = incidents.get_incident(session, incident_id)
    return render(
        request,
        "incidents/show.html",
        {"incident": incidents.show(session, incident), "notice": incident.notice},
    )


@router.post("/admin/incidents/{incident_id}/trace", dependencies=CSRF)
def trace(
    request: Request,
    incident_id: int,
    suspect: UploadFile = File(...),
    release: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Record an uploaded suspect file, trace it and attach the report."""
    incident = incidents.get_incident(session, incident_id)
    with saved_upload(suspect) as path:
        incidents.trace_suspect(
            get_services(request),
            session,
            incident,
            [path],
            release_ref=release.strip() or None,
            actor=user.email,
            ip=client_ip(request),
        )
    session.commit()
    return redirect(_page(incident_id), "saved")


@router.post("/admin/incidents/{incident_id}/revoke", dependencies=CSRF)
def revoke(
    request: Request,
    incident_id: int,
    grant_id: int = Form(0),
    reason: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Revoke an implicated recipient's grant."""
    incident = incidents.get_incident(session, incident_id)
    incidents.revoke_implicated_grant(
        session, incident, grant_id, reason=reason, actor=user.email, ip=client_ip(request)
    )
    commit_and_deliver(request, session)
    return redirect(_page(incident_id), "saved")


@router.post("/admin/incidents/{incident_id}/narrow", dependencies=CSRF)
def narrow(
    request: Request,
    incident_id: int,
    circle: str = Form(""),
    reason: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Narrow the incident's release to a smaller circle."""
    incident = incidents.get_incident(session, incident_id)
    incidents.narrow_circle(
        session, incident, circle, reason=reason, actor=user.email, ip=client_ip(request)
    )
    commit_and_deliver(request, session)
    return redirect(_page(incident_id), "saved")


@router.post("/admin/incidents/{incident_id}/notice", dependencies=CSRF)
def save_notice(
    request: Request,
    incident_id: int,
    text: str = Form(""),
    action: str = Form("save"),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Draft the takedown notice from the evidence (action=draft), or save an edit."""
    incident = incidents.get_incident(session, incident_id)
    if action == "draft":
        notice.draft(session, incident, get_services(request).settings, actor=user.email)
    else:
        notice.edit(session, incident, text, actor=user.email, ip=client_ip(request))
    session.commit()
    return redirect(_page(incident_id) + "#notice", "saved")


@router.post("/admin/incidents/{incident_id}/notice/send", dependencies=CSRF)
def send_notice(
    request: Request,
    incident_id: int,
    to: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Send the notice to a provider's abuse address; the sending is recorded."""
    incident = incidents.get_incident(session, incident_id)
    notice.send(session, incident, to, actor=user.email, ip=client_ip(request))
    commit_and_deliver(request, session)
    return redirect(_page(incident_id) + "#notice", "saved")


@router.get("/admin/incidents/{incident_id}/notice.txt")
def notice_text(
    incident_id: int, user: User = ADMIN, session: Session = Depends(db_session)
) -> Response:
    """The notice as plain text."""
    incident = incidents.get_incident(session, incident_id)
    return PlainTextResponse(incident.notice, headers=_attachment(f"notice-{incident_id}.txt"))


@router.get("/admin/incidents/{incident_id}/notice.html", response_class=HTMLResponse)
def notice_page(
    incident_id: int, user: User = ADMIN, session: Session = Depends(db_session)
) -> Response:
    """The notice as a printable page."""
    incident = incidents.get_incident(session, incident_id)
    return HTMLResponse(notice.notice_html(incident))


@router.post("/admin/incidents/{incident_id}/pack", dependencies=CSRF)
def export_pack(
    request: Request, incident_id: int, user: User = ADMIN, session: Session = Depends(db_session)
) -> Response:
    """The signed evidence archive (its export is recorded)."""
    incident = incidents.get_incident(session, incident_id)
    data = pack.export(
        session, get_services(request).secrets, incident, actor=user.email, ip=client_ip(request)
    )
    session.commit()
    return Response(
        data, media_type="application/zip", headers=_attachment(f"incident-{incident_id}.zip")
    )


@router.post("/admin/incidents/{incident_id}/close", dependencies=CSRF)
def close(
    request: Request,
    incident_id: int,
    resolution: str = Form(""),
    user: User = ADMIN,
    session: Session = Depends(db_session),
) -> Response:
    """Close the incident (its hold on widening ends)."""
    incident = incidents.get_incident(session, incident_id)
    incidents.close_incident(
        session, incident, resolution=resolution, actor=user.email, ip=client_ip(request)
    )
    session.commit()
    return redirect(_page(incident_id), "saved")


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}

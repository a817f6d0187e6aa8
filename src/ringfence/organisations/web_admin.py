"""The lab's organisation pages: institutions with their verified domains, and their NDAs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.access import circles
from ringfence.accounts.models import User
from ringfence.db import utcnow
from ringfence.errors import RingfenceError
from ringfence.organisations import services as organisations
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver, form_error, redirect, render
from ringfence.web.params import DbId
from ringfence.web.security import Permission, client_ip, page_user, verify_csrf

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]


def _context(session: Session) -> dict[str, Any]:
    return {
        "institutions": organisations.list_institutions(session),
        "ndas": organisations.list_ndas(session),
        "now": utcnow(),
    }


@router.get("/admin/institutions", response_class=HTMLResponse)
def institutions_page(
    request: Request,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Institutions and their domains; NDAs to record, countersign or revoke."""
    return render(request, "organisations/institutions.html", _context(session))


@router.post("/admin/institutions", dependencies=CSRF)
def add_institution(
    request: Request,
    name: str = Form(""),
    domains: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Record an institution and its verified domains (comma-separated)."""
    try:
        organisations.add_institution(
            session, name, domains.replace(",", " ").split(), actor=user.email
        )
    except RingfenceError as exc:
        return form_error(
            request, session, "organisations/institutions.html", lambda: _context(session), exc
        )
    session.commit()
    return redirect("/admin/institutions", "saved")


@router.post("/admin/ndas", dependencies=CSRF)
async def add_nda(
    request: Request,
    institution: str = Form(""),
    signatory: str = Form(""),
    expires: str = Form(""),
    document: UploadFile = File(...),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Store a signed NDA document and record it (then countersign it)."""
    try:
        data = await document.read(50 * 1024 * 1024 + 1)
        organisations.record_nda(
            session,
            get_services(request).blobs,
            organisations.get_institution(session, institution),
            document=data,
            document_name=document.filename or "nda.pdf",
            signatory=signatory,
            expires_at=organisations.parse_date(expires, "expires"),
            actor=user.email,
        )
    except RingfenceError as exc:
        return form_error(
            request, session, "organisations/institutions.html", lambda: _context(session), exc
        )
    session.commit()
    return redirect("/admin/institutions", "saved")


@router.post("/admin/ndas/{nda_id}/countersign", dependencies=CSRF)
def countersign(
    request: Request,
    nda_id: DbId,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Countersign an NDA as the signed-in admin."""
    organisations.countersign_nda(
        session, organisations.get_nda(session, nda_id), user, ip=client_ip(request)
    )
    session.commit()
    return redirect("/admin/institutions", "saved")


@router.post("/admin/ndas/{nda_id}/revoke", dependencies=CSRF)
def revoke(
    request: Request,
    nda_id: DbId,
    reason: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """End an NDA early: its institution's members stop being partners at once."""
    try:
        circles.revoke_nda(
            session,
            organisations.get_nda(session, nda_id),
            reason=reason,
            actor=user.email,
            ip=client_ip(request),
        )
    except RingfenceError as exc:
        return form_error(
            request, session, "organisations/institutions.html", lambda: _context(session), exc
        )
    commit_and_deliver(request, session)
    return redirect("/admin/institutions", "saved")

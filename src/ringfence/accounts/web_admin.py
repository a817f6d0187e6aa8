"""The lab's account pages: every user with their role, institution and whether they are active."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts import services as accounts
from ringfence.accounts.models import ROLES, User
from ringfence.errors import RingfenceError
from ringfence.organisations import services as organisations
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver, form_error, redirect, render
from ringfence.web.security import Permission, page_user, verify_csrf

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]


def _users_context(session: Session) -> dict[str, Any]:
    return {
        "users": accounts.list_users(session),
        "roles": ROLES,
        "institutions": organisations.list_institutions(session),
    }


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Every account with its role and institution."""
    return render(request, "accounts/users.html", _users_context(session))


@router.post("/admin/users", dependencies=CSRF)
def update_user(
    request: Request,
    email: str = Form(""),
    role: str = Form(""),
    institution: str = Form(""),
    active: str = Form("on"),
    create: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Add a user, or change a user's role, institution and whether the account is active."""
    svc = get_services(request)
    try:
        if create:
            accounts.add_user(
                session,
                svc.secrets,
                email,
                role=role or "member",
                institution=institution or None,
                actor=user.email,
                base_url=svc.settings.base_url,
            )
        else:
            accounts.update_user(
                session,
                email,
                role=role or None,
                institution=institution,
                active=active == "on",
                actor=user.email,
            )
    except RingfenceError as exc:
        return form_error(
            request, session, "accounts/users.html", lambda: _users_context(session), exc
        )
    commit_and_deliver(request, session)
    return redirect("/admin/users", "saved")

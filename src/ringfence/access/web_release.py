"""The access part of a release page: circle, licence, the request form and my state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.access import circles, licences, requests, status
from ringfence.access.countries import COUNTRIES
from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.errors import RingfenceError
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import NOTICES, commit_and_deliver, redirect, render
from ringfence.web.security import (
    Permission,
    client_ip,
    optional_page_user,
    page_user,
    template_user,
    verify_csrf,
)
from ringfence.web.templating import templates

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]


def release_access(request: Request, release: Release) -> dict[str, Any]:
    """Jinja global for release.html's `release_access` block (the catalogue renders the page)."""
    user = template_user(request)
    with get_services(request).sessions() as session:
        # The page's own objects belong to another session: read both afresh in this one.
        state = status.access_state_by_id(session, user.id if user else None, release.id)
    state["error"] = getattr(request.state, "access_error", None)
    state["values"] = getattr(request.state, "access_values", {})
    state["countries"] = COUNTRIES
    state["notice"] = NOTICES.get(request.query_params.get("done", ""))
    return state


templates.env.globals["release_access"] = release_access


def _release_page_with_error(
    request: Request, release: Release, error: RingfenceError, values: dict[str, Any]
) -> Response:
    request.state.access_error = error.diagnostics()
    request.state.access_values = values
    return render(request, "release.html", {"release": release}, status_code=error.http_status)


@router.post("/models/{name}/{version}/request", dependencies=CSRF)
async def submit_request(
    request: Request,
    name: str,
    version: str,
    user: User = Depends(page_user(Permission.REQUEST)),
    session: Session = Depends(db_session),
) -> Response:
    """Send the release's request form."""
    release = circles.visible_release(session, f"{name}@{version}", user)
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        requests.submit_request(
            session,
            user,
            release,
            values,
            via="web",
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            base_url=get_services(request).settings.base_url,
        )
    except RingfenceError as exc:
        session.rollback()
        return _release_page_with_error(request, release, exc, values)
    commit_and_deliver(request, session)
    return redirect(f"/models/{name}/{version}", "requested")


@router.post("/models/{name}/{version}/licence", dependencies=CSRF)
def accept_licence(
    request: Request,
    name: str,
    version: str,
    licence_sha256: str = Form(""),
    agree: str = Form(""),
    user: User = Depends(page_user(Permission.REQUEST)),
    session: Session = Depends(db_session),
) -> Response:
    """Accept the licence text the page showed (its hash travels with the form)."""
    release = circles.visible_release(session, f"{name}@{version}", user)
    try:
        if agree != "on":
            from ringfence.errors import InvalidInput

            raise InvalidInput("tick the box to accept the licence")
        licences.accept_licence(
            session,
            user,
            release,
            text_sha256=licence_sha256,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except RingfenceError as exc:
        session.rollback()
        return _release_page_with_error(request, release, exc, {})
    session.commit()
    return redirect(f"/models/{name}/{version}", "accepted")


@router.get("/models/{name}/{version}/licence", response_class=HTMLResponse)
def licence_text(
    request: Request,
    name: str,
    version: str,
    user: User | None = Depends(optional_page_user),
    session: Session = Depends(db_session),
) -> Response:
    """The full text of the release's current licence (for those who may see the release)."""
    release = circles.visible_release(session, f"{name}@{version}", user)
    return render(request, "access/licence.html", {"release": release, "licence": release.licence})

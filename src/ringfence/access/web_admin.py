"""Pages for the lab's access work: the review queue, circles and licences."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.access import circles, licences, policy, requests
from ringfence.access.grants import check_mode
from ringfence.access.models import CIRCLES
from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.errors import RingfenceError
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver, form_error, redirect, render
from ringfence.web.params import db_id
from ringfence.web.security import Permission, client_ip, page_user, verify_csrf

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]


def _review_context(session: Session, state: str, release: str, q: str) -> dict[str, Any]:
    chosen = catalogue.get_release(session, release) if release else None
    return {
        "queue": requests.review_queue(session, state=state or None, release=chosen, search=q),
        "releases": requests.releases_with_requests(session),
        "states": requests.REQUEST_STATES,
        "filters": {"state": state, "release": release, "q": q},
    }


@router.get("/review", response_class=HTMLResponse)
def review(
    request: Request,
    state: str = "pending",
    release: str = "",
    q: str = "",
    user: User = Depends(page_user(Permission.REVIEW)),
    session: Session = Depends(db_session),
) -> Response:
    """The review queue, filtered by state, release and requester."""
    return render(
        request, "access/review.html", {"me": user, **_review_context(session, state, release, q)}
    )


@router.post("/review/decide", dependencies=CSRF)
async def decide(
    request: Request,
    user: User = Depends(page_user(Permission.REVIEW)),
    session: Session = Depends(db_session),
) -> Response:
    """Approve or reject the ticked requests (bulk)."""
    form = await request.form()
    action = str(form.get("action", ""))
    reason = str(form.get("reason", ""))
    mode = str(form.get("mode", "")) or None
    try:
        approve = requests.bulk_action(action)
        if mode is not None:
            check_mode(mode)
        outcomes = requests.decide_many(
            session,
            [db_id(v, "ids") for v in form.getlist("ids")],
            approve=approve,
            reviewer=user,
            actor=user.email,
            reason=reason,
            ip=client_ip(request),
            base_url=get_services(request).settings.base_url,
            mode=mode,
        )
    except RingfenceError as exc:
        session.rollback()
        message = exc.diagnostics()
        return render(
            request,
            "access/review.html",
            {"me": user, "error": message, **_review_context(session, "pending", "", "")},
            status_code=400,
        )
    commit_and_deliver(request, session)
    problems = [f"#{o.request_id}: {o.error}" for o in outcomes if o.error]
    if problems:
        return render(
            request,
            "access/review.html",
            {
                "me": user,
                "error": " ".join(problems),
                **_review_context(session, "pending", "", ""),
            },
            status_code=409,
        )
    return redirect("/review", "decided")


def _circles_context(session: Session) -> dict[str, Any]:
    return {
        "releases": catalogue.list_releases(session),
        "circles": CIRCLES,
    }


@router.get("/admin/circles", response_class=HTMLResponse)
def circles_page(
    request: Request,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Releases and their circles; institutions and NDAs."""
    return render(request, "access/circles.html", _circles_context(session))


@router.post("/admin/circles/set", dependencies=CSRF)
def set_circle(
    request: Request,
    release: str = Form(""),
    circle: str = Form(""),
    reason: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Set a release's circle (narrowing revokes grants outside it)."""
    try:
        circles.set_circle(
            session,
            catalogue.get_release(session, release),
            circle,
            reason=reason,
            actor=user.email,
            ip=client_ip(request),
        )
    except RingfenceError as exc:
        return form_error(
            request, session, "access/circles.html", lambda: _circles_context(session), exc
        )
    commit_and_deliver(request, session)
    return redirect("/admin/circles", "circle-set")


def _licences_context(session: Session) -> dict[str, Any]:
    return {
        "licences": licences.list_licences(session),
        "releases": catalogue.list_releases(session),
    }


@router.get("/admin/licences", response_class=HTMLResponse)
def licences_page(
    request: Request,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Licence versions; which release names which."""
    return render(request, "access/licences.html", _licences_context(session))


@router.post("/admin/licences", dependencies=CSRF)
def add_licence(
    request: Request,
    slug: str = Form(""),
    title: str = Form(""),
    text: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Add a licence version (empty text: the shipped research-only template)."""
    try:
        licences.add_licence(session, slug, text=text, title=title, actor=user.email)
    except RingfenceError as exc:
        return form_error(
            request, session, "access/licences.html", lambda: _licences_context(session), exc
        )
    session.commit()
    return redirect("/admin/licences", "saved")


@router.post("/admin/licences/set", dependencies=CSRF)
def set_licence(
    request: Request,
    release: str = Form(""),
    licence: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Name a release's licence; holders must accept it again."""
    try:
        licences.set_release_licence(
            session,
            catalogue.get_release(session, release),
            catalogue.get_licence(session, licence),
            actor=user.email,
            base_url=get_services(request).settings.base_url,
        )
    except RingfenceError as exc:
        return form_error(
            request, session, "access/licences.html", lambda: _licences_context(session), exc
        )
    commit_and_deliver(request, session)
    return redirect("/admin/licences", "saved")


def _policy_context(session: Session, ref: str) -> dict[str, Any]:
    release = catalogue.get_release(session, ref)
    current = policy.get_policy(session, release)
    return {
        "release": release,
        "fields_json": json.dumps(current.fields, indent=2),
        "rules_text": "\n".join(policy.rule_text(r) for r in current.rules),
        "grant_days": current.grant_days,
    }


@router.get("/admin/releases/{name}/{version}/policy", response_class=HTMLResponse)
def policy_page(
    request: Request,
    name: str,
    version: str,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """A release's request form, auto-approval rules and grant lifetime."""
    return render(request, "access/policy.html", _policy_context(session, f"{name}@{version}"))


@router.post("/admin/releases/{name}/{version}/policy", dependencies=CSRF)
def set_policy(
    request: Request,
    name: str,
    version: str,
    fields: str = Form(""),
    rules: str = Form(""),
    grant_days: int = Form(0),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Change the policy (fields as JSON, one rule a line, the grant lifetime in days)."""
    ref = f"{name}@{version}"
    try:
        policy.set_policy(
            session,
            catalogue.get_release(session, ref),
            fields=policy.parse_fields(fields),
            rules=[policy.parse_rule(line) for line in rules.splitlines() if line.strip()],
            grant_days=grant_days,
            actor=user.email,
            ip=client_ip(request),
        )
    except RingfenceError as exc:
        return form_error(
            request, session, "access/policy.html", lambda: _policy_context(session, ref), exc
        )
    session.commit()
    return redirect(f"/admin/releases/{name}/{version}/policy", "saved")

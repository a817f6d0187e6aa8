"""Account pages: sign-up, verification, sign-in, passwords, my access, tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.access import grants, requests
from ringfence.accounts import services as accounts
from ringfence.accounts import tokens, web_two_factor
from ringfence.accounts.models import User
from ringfence.errors import RingfenceError
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver, form_error, redirect, render, safe_next
from ringfence.web.params import DbId
from ringfence.web.security import (
    SESSION_COOKIE,
    Permission,
    clear_session_cookie,
    client_ip,
    page_user,
    set_session_cookie,
    verify_csrf,
)

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request) -> Response:
    """The sign-up form."""
    return render(request, "accounts/signup.html", {"email": "", "name": ""})


@router.post("/signup", dependencies=CSRF)
def signup(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    name: str = Form(""),
    session: Session = Depends(db_session),
) -> Response:
    """Create an account; the answer never says whether the address already had one."""
    svc = get_services(request)
    try:
        accounts.sign_up(
            session,
            svc.secrets,
            email,
            password,
            name=name,
            ip=client_ip(request),
            base_url=svc.settings.base_url,
        )
    except RingfenceError as exc:
        return form_error(
            request,
            session,
            "accounts/signup.html",
            lambda: {"email": email[:320], "name": name[:200]},
            exc,
        )
    commit_and_deliver(request, session)
    return redirect("/login", "signed-up")


@router.get("/verify", response_class=HTMLResponse)
def verify(request: Request, token: str = "", session: Session = Depends(db_session)) -> Response:
    """Confirm an address from the mailed link."""
    svc = get_services(request)
    accounts.verify_email(session, svc.secrets, token, ip=client_ip(request))
    session.commit()
    return redirect("/account" if request.cookies.get(SESSION_COOKIE) else "/login", "verified")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "") -> Response:
    """The sign-in form."""
    return render(request, "accounts/login.html", {"next": safe_next(next), "email": ""})


@router.post("/login", dependencies=CSRF)
def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    next: str = Form(""),
    session: Session = Depends(db_session),
) -> Response:
    """Sign in: a new session cookie (after the code step with two-factor), or one message."""
    svc = get_services(request)
    try:
        user = accounts.authenticate(
            session, svc.login_limiter, email, password, ip=client_ip(request)
        )
    except RingfenceError as exc:
        session.commit()  # the failed attempt stays in the audit log
        return render(
            request,
            "accounts/login.html",
            {"error": exc.diagnostics(), "next": safe_next(next), "email": email[:320]},
            status_code=exc.http_status,
        )
    if user.two_factor_enabled:
        session.commit()  # a rehashed password, if any; the session waits for the code
        return web_two_factor.challenge(request, user, next)
    raw = accounts.start_session(
        session, user, ip=client_ip(request), user_agent=request.headers.get("user-agent")
    )
    session.commit()
    response = redirect(safe_next(next))
    set_session_cookie(request, response, raw)
    return response


@router.post("/logout", dependencies=CSRF)
def logout(request: Request, session: Session = Depends(db_session)) -> Response:
    """Sign out this browser."""
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        accounts.end_session(session, raw, ip=client_ip(request))
        session.commit()
    response = redirect("/login", "signed-out")
    clear_session_cookie(response)
    return response


@router.get("/password/reset", response_class=HTMLResponse)
def reset_page(request: Request) -> Response:
    """Ask for a link to choose a new password."""
    return render(request, "accounts/password_reset.html", {})


@router.post("/password/reset", dependencies=CSRF)
def reset(
    request: Request, email: str = Form(""), session: Session = Depends(db_session)
) -> Response:
    """Mail a reset link if the address has an account; the answer is the same either way."""
    svc = get_services(request)
    try:
        accounts.request_password_reset(
            session, svc.secrets, email, ip=client_ip(request), base_url=svc.settings.base_url
        )
    except RingfenceError as exc:
        return render(
            request,
            "accounts/password_reset.html",
            {"error": exc.diagnostics()},
            status_code=exc.http_status,
        )
    commit_and_deliver(request, session)
    return redirect("/login", "reset-sent")


@router.get("/password/set", response_class=HTMLResponse)
def set_password_page(request: Request, token: str = "") -> Response:
    """Choose a password from a mailed link."""
    return render(request, "accounts/password_set.html", {"token": token})


@router.post("/password/set", dependencies=CSRF)
def set_password(
    request: Request,
    token: str = Form(""),
    password: str = Form(""),
    session: Session = Depends(db_session),
) -> Response:
    """Set the password; other sessions of the account end."""
    svc = get_services(request)
    try:
        accounts.set_password(session, svc.secrets, token, password, ip=client_ip(request))
    except RingfenceError as exc:
        return form_error(
            request, session, "accounts/password_set.html", lambda: {"token": token}, exc
        )
    session.commit()
    return redirect("/login", "password-set")


def _account_context(session: Session, user: User) -> dict[str, Any]:
    return {
        "user": user,
        "requests": requests.user_requests(session, user),
        "grants": grants.list_grants(session, user=user),
        "tokens": tokens.list_tokens(session, user),
        "scopes": ["read", "download"] + (["admin"] if user.role in ("admin", "reviewer") else []),
    }


@router.get("/account", response_class=HTMLResponse)
def account(
    request: Request,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """My requests, grants and API tokens."""
    return render(request, "accounts/account.html", _account_context(session, user))


@router.post("/account/tokens", dependencies=CSRF)
def create_token(
    request: Request,
    scope: str = Form("read"),
    name: str = Form(""),
    user: User = Depends(page_user(Permission.TOKENS)),
    session: Session = Depends(db_session),
) -> Response:
    """Create a token and show it on this page once."""
    try:
        new = tokens.create_token(session, user, scope, name=name, actor=user.email)
    except RingfenceError as exc:
        return form_error(
            request, session, "accounts/account.html", lambda: _account_context(session, user), exc
        )
    session.commit()
    return render(
        request, "accounts/account.html", {**_account_context(session, user), "new_token": new.raw}
    )


@router.post("/account/tokens/{token_id}/revoke", dependencies=CSRF)
def revoke_token(
    request: Request,
    token_id: DbId,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """Revoke one of my tokens."""
    tokens.revoke_token(session, user, token_id, actor=user.email)
    session.commit()
    return redirect("/account", "token-revoked")


@router.post("/requests/{request_id}/appeal", dependencies=CSRF)
def appeal(
    request: Request,
    request_id: DbId,
    text: str = Form(""),
    user: User = Depends(page_user(Permission.REQUEST)),
    session: Session = Depends(db_session),
) -> Response:
    """Appeal a rejection, once."""
    req = requests.get_request(session, request_id)
    try:
        requests.appeal(session, user, req, text, ip=client_ip(request))
    except RingfenceError as exc:
        return form_error(
            request, session, "accounts/account.html", lambda: _account_context(session, user), exc
        )
    session.commit()
    return redirect("/account", "appealed")

"""Two-factor pages: the sign-in code step and the account's enrolment page."""

from __future__ import annotations

from typing import Any

import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts import services as accounts
from ringfence.accounts import two_factor
from ringfence.accounts.models import User
from ringfence.errors import AuthenticationRequired, RateLimited, RingfenceError
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver, form_error, redirect, render, safe_next
from ringfence.web.security import (
    Permission,
    client_ip,
    page_user,
    set_session_cookie,
    verify_csrf,
)

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]
PAGE = "accounts/two_factor.html"
CODE_PAGE = "accounts/two_factor_login.html"


def challenge(request: Request, user: User, next: str) -> Response:
    """The code step of sign-in, after a right password; no session exists yet."""
    token = two_factor.half_sign_in_token(get_services(request).secrets, user)
    return render(request, CODE_PAGE, {"token": token, "next": safe_next(next)})


@router.get("/login/two-factor", response_class=HTMLResponse)
def code_page() -> Response:
    """The code step is reached only by signing in; coming here directly starts over."""
    return redirect("/login")


@router.post("/login/two-factor", dependencies=CSRF)
def code_step(
    request: Request,
    token: str = Form(""),
    code: str = Form(""),
    next: str = Form(""),
    session: Session = Depends(db_session),
) -> Response:
    """Finish signing in with an authenticator or recovery code: only now a session starts."""
    svc = get_services(request)
    try:
        user = two_factor.complete_sign_in(
            session, svc.secrets, svc.login_limiter, token, code, ip=client_ip(request)
        )
    except (AuthenticationRequired, RateLimited) as exc:
        session.commit()  # the failed attempt stays in the audit log
        context = {"token": token, "next": safe_next(next), "error": exc.diagnostics()}
        return render(request, CODE_PAGE, context, status_code=exc.http_status)
    except RingfenceError as exc:
        # An expired, forged or outdated half sign-in: the password step comes again.
        session.rollback()
        context = {"error": exc.diagnostics(), "next": safe_next(next), "email": ""}
        return render(request, "accounts/login.html", context, status_code=exc.http_status)
    raw = accounts.start_session(
        session, user, ip=client_ip(request), user_agent=request.headers.get("user-agent")
    )
    commit_and_deliver(request, session)  # a spent recovery code is mailed to the account
    response = redirect(safe_next(next))
    set_session_cookie(request, response, raw)
    return response


def _qr_data_uri(uri: str) -> str:
    # Drawn here, on the server: the secret never goes to a third-party QR service.
    return str(segno.make(uri, error="m").svg_data_uri(scale=4))


def _context(request: Request, session: Session, user: User, **extra: Any) -> dict[str, Any]:
    pending = two_factor.pending_enrolment(get_services(request).secrets, user)
    return {
        "user": user,
        "required": user.role in two_factor.REQUIRED_ROLES,
        "enrolment": pending,
        "qr": _qr_data_uri(pending.uri) if pending else None,
        "unused_codes": two_factor.unused_recovery_codes(session, user),
        **extra,
    }


def _refused(request: Request, session: Session, user: User, exc: RingfenceError) -> Response:
    if isinstance(exc, AuthenticationRequired | RateLimited):
        # A wrong code changed nothing but the audit log, which must keep the attempt.
        session.commit()
        context = {**_context(request, session, user), "error": exc.diagnostics()}
        # The person is signed in: a wrong code is a refusal (403), not "sign in" (401).
        status = 403 if isinstance(exc, AuthenticationRequired) else exc.http_status
        return render(request, PAGE, context, status_code=status)
    return form_error(request, session, PAGE, lambda: _context(request, session, user), exc)


@router.get("/account/two-factor", response_class=HTMLResponse)
def page(
    request: Request,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """Whether two-factor sign-in is on, and the forms to change that."""
    return render(request, PAGE, _context(request, session, user))


@router.post("/account/two-factor/begin", dependencies=CSRF)
def begin(
    request: Request,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """A new secret to add to an authenticator app (text, otpauth:// URI and QR code)."""
    try:
        two_factor.begin_enrolment(session, get_services(request).secrets, user)
    except RingfenceError as exc:
        return _refused(request, session, user, exc)
    session.commit()
    return render(request, PAGE, _context(request, session, user))


@router.post("/account/two-factor/confirm", dependencies=CSRF)
def confirm(
    request: Request,
    code: str = Form(""),
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """Turn two-factor on with a code from the app; the recovery codes are shown this once."""
    svc = get_services(request)
    try:
        codes = two_factor.confirm_enrolment(
            session,
            svc.secrets,
            user,
            code,
            ip=client_ip(request),
            base_url=svc.settings.base_url,
        )
    except RingfenceError as exc:
        return _refused(request, session, user, exc)
    commit_and_deliver(request, session)
    return render(request, PAGE, _context(request, session, user, recovery_codes=codes))


@router.post("/account/two-factor/disable", dependencies=CSRF)
def disable(
    request: Request,
    code: str = Form(""),
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """Turn two-factor off; needs a current code or a recovery code."""
    svc = get_services(request)
    try:
        two_factor.disable(
            session, svc.secrets, svc.login_limiter, user, code, ip=client_ip(request)
        )
    except RingfenceError as exc:
        return _refused(request, session, user, exc)
    commit_and_deliver(request, session)
    return redirect("/account/two-factor", "two-factor-off")


@router.post("/account/two-factor/recovery-codes", dependencies=CSRF)
def regenerate(
    request: Request,
    code: str = Form(""),
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """Ten new recovery codes, shown this once; the old ones stop working."""
    svc = get_services(request)
    try:
        codes = two_factor.regenerate_recovery_codes(
            session, svc.secrets, svc.login_limiter, user, code, ip=client_ip(request)
        )
    except RingfenceError as exc:
        return _refused(request, session, user, exc)
    commit_and_deliver(request, session)
    return render(request, PAGE, _context(request, session, user, recovery_codes=codes))

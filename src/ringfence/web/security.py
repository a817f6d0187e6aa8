"""Who is calling: session cookies or bearer tokens, role checks and CSRF for forms.

Public interface for every area's views:

    from ringfence.web.security import current_user, require_user, require_role, verify_csrf

    @router.get("/api/v1/things")
    def things(user: User = Depends(require_user("download"))): ...

A request with `Authorization: Bearer <token>` is authenticated by the token alone (cookies
are ignored) and needs the route's scope; a browser is authenticated by its session cookie and
acts with its role's full rights. Unsafe form posts from browsers must carry the per-session
CSRF token (`verify_csrf`); bearer calls need none, as browsers never attach tokens on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from ringfence.access import accounts
from ringfence.access.models import User
from ringfence.access.tokens import user_from_token
from ringfence.errors import AuthenticationRequired, PermissionDenied
from ringfence.web.deps import db_session, get_services
from ringfence.web.templating import templates

SESSION_COOKIE = "rf_session"
ANON_COOKIE = "rf_anon"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def login_redirect(request: Request) -> RedirectResponse:
    """Send an anonymous browser to sign in, then back here."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def client_ip(request: Request) -> str:
    """The peer's address (forwarded headers are not trusted: they are easy to forge)."""
    return request.client.host if request.client else "unknown"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _authenticate(request: Request, session: Session, scope: str) -> User | None:
    raw = _bearer(request)
    user: User | None
    if raw is not None:
        user = user_from_token(session, raw, scope)
        request.state.auth = "token"
    else:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        user = accounts.user_from_session(session, cookie) if cookie else None
        request.state.auth = "session" if user else None
    request.state.account = _snapshot(user)
    return user


def current_user(request: Request, session: Session = Depends(db_session)) -> User | None:
    """The signed-in user (cookie) or token holder (read scope), or None for anonymous."""
    return _authenticate(request, session, "read")


def require_user(scope: str = "read") -> Callable[..., User]:
    """A dependency giving the caller, who must be signed in (or hold a token of `scope`)."""

    def dependency(request: Request, session: Session = Depends(db_session)) -> User:
        user = _authenticate(request, session, scope)
        if user is None:
            raise AuthenticationRequired(
                "sign in first", hint="use a session or `Authorization: Bearer <token>`"
            )
        return user

    return dependency


def require_role(*roles: str, scope: str = "admin") -> Callable[..., User]:
    """A dependency giving the caller when their role is one of `roles`.

    Tokens need `scope` too (default admin: a leaked read token must not approve requests).
    """

    def dependency(request: Request, session: Session = Depends(db_session)) -> User:
        user = require_user(scope)(request, session)
        if user.role not in roles:
            raise PermissionDenied(f"this needs the {' or '.join(roles)} role")
        return user

    return dependency


def _csrf_key(request: Request) -> bytes:
    return get_services(request).secrets.derive("web:csrf")


def _binding(request: Request) -> str:
    # A signed-in browser's token is bound to its session; before sign-in, to a random cookie.
    cookie = request.cookies.get(SESSION_COOKIE) or request.cookies.get(ANON_COOKIE)
    if cookie:
        return cookie
    fresh = getattr(request.state, "anon_cookie", None)
    if fresh is None:
        fresh = pysecrets.token_urlsafe(24)
        request.state.anon_cookie = fresh
    return str(fresh)


def csrf_token(request: Request) -> str:
    """The CSRF token forms on this page must carry."""
    binding = _binding(request)
    return hmac.new(_csrf_key(request), binding.encode(), hashlib.sha256).hexdigest()


def csrf_input(request: Request) -> Markup:
    """The hidden form field carrying the CSRF token (a Jinja global)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, csrf_token(request)
    )


async def verify_csrf(request: Request) -> None:
    """Refuse an unsafe browser request without the right CSRF token (bearer calls pass)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or _bearer(request) is not None:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else ""
    cookie = request.cookies.get(SESSION_COOKIE) or request.cookies.get(ANON_COOKIE)
    expected = (
        hmac.new(_csrf_key(request), cookie.encode(), hashlib.sha256).hexdigest() if cookie else ""
    )
    if not expected or not hmac.compare_digest(sent, expected):
        raise PermissionDenied(
            "the form expired or did not come from this site", hint="reload the page and try again"
        )


def _secure(request: Request) -> bool:
    return get_services(request).settings.base_url.startswith("https://")


def set_session_cookie(request: Request, response: Response, raw: str) -> None:
    """Attach a new session cookie: HttpOnly, SameSite=Lax, Secure behind https."""
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(ANON_COOKIE, path="/")


def clear_session_cookie(response: Response) -> None:
    """Forget the session cookie in the browser."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def attach_anon_cookie(request: Request, response: Response) -> None:
    """Set the pre-sign-in CSRF cookie when this request created one."""
    fresh = getattr(request.state, "anon_cookie", None)
    if fresh is not None:
        response.set_cookie(
            ANON_COOKIE, fresh, httponly=True, samesite="lax", secure=_secure(request), path="/"
        )


@dataclass(frozen=True)
class Account:
    """Who is signed in, as plain values a template can read after the session closed."""

    id: int
    email: str
    role: str


def _snapshot(user: User | None) -> Account | None:
    return Account(user.id, user.email, user.role) if user is not None else None


def template_user(request: Request) -> Account | None:
    """The signed-in account for templates rendered by any area (looked up once per request)."""
    if hasattr(request.state, "account"):
        cached: Account | None = request.state.account
        return cached
    cookie = request.cookies.get(SESSION_COOKIE, "")
    account = None
    if cookie:
        with get_services(request).sessions() as session:
            account = _snapshot(accounts.user_from_session(session, cookie))
    request.state.account = account
    return account


templates.env.globals["csrf_input"] = csrf_input
templates.env.globals["csrf_token"] = csrf_token
templates.env.globals["account_user"] = template_user


async def verify_csrf_for_session(request: Request) -> None:
    """`verify_csrf` for JSON APIs: only a browser session can be ridden cross-site.

    A call with neither a session cookie nor a token is simply anonymous, and the route's
    authentication answers it (401) rather than a CSRF refusal.
    """
    if request.cookies.get(SESSION_COOKIE):
        await verify_csrf(request)

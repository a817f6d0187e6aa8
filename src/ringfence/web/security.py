"""Who is calling, and what they may do: one identity for pages, the JSON API and the Hub API.

Two kinds of principal, never mixed (as warehouse keeps sessions and macaroons apart):

- a **browser session** (cookie `rf_session`) authenticates pages, and only pages; every
  unsafe page request must carry the per-session CSRF token (`verify_csrf`);
- an **API token** (`Authorization: Bearer rf_...`) authenticates the JSON API (`/api/v1`)
  and the Hub API, and only those; its scope is checked against the route's permission.

A token sent to a page, or a cookie sent to an API, is ignored: the caller is anonymous
there. Views ask for a `Permission`:

    @router.get("/api/v1/things")
    def things(user: User = Depends(api_user(Permission.BROWSE))): ...

    @router.get("/account")
    def account(user: User = Depends(page_user(Permission.ACCOUNT))): ...

`RULES` says, for each permission, which token scope may exercise it (None: sessions only),
which roles hold it and whether the address must be verified. `authorise_download` and
`visible` stay the per-object rules a view applies after this.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from ringfence.accounts import services as accounts
from ringfence.accounts import two_factor
from ringfence.accounts.models import User
from ringfence.accounts.sessions import SESSION_LIFETIME
from ringfence.accounts.tokens import scope_allows, user_from_token
from ringfence.errors import AuthenticationRequired, PermissionDenied, TwoFactorRequired
from ringfence.web.deps import db_session, get_services
from ringfence.web.proxies import trusted_proxies
from ringfence.web.templating import templates

SESSION_COOKIE = "rf_session"
ANON_COOKIE = "rf_anon"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class Permission(StrEnum):
    """What a route lets its caller do."""

    #: see the releases one may see, one's own requests, grants and files' metadata
    BROWSE = "browse"
    #: ask for a release, accept its licence, appeal a rejection
    REQUEST = "request"
    #: make download links, fetch one's own fingerprinted copy and signed manifest
    DOWNLOAD = "download"
    #: query a release through the OpenAI-compatible endpoint (/v1) under a hosted grant
    INFER = "infer"
    #: one's own account page, sign-out, two-factor settings
    ACCOUNT = "account"
    #: create and revoke API tokens
    TOKENS = "tokens"
    #: register one's own derivatives of releases (and their webhooks)
    DERIVE = "derive"
    #: read and decide access requests
    REVIEW = "review"
    #: the lab's decisions: circles, licences, users, institutions, NDAs, audit, traces
    ADMIN = "admin"
    #: read the background jobs' states, progress and errors (the lab's operators)
    JOBS = "jobs"


@dataclass(frozen=True)
class Rule:
    """Who holds a permission, and by which means of authentication."""

    #: the token scope that may exercise it; None: a browser session only
    scope: str | None
    #: the roles that hold it; None: every account
    roles: tuple[str, ...] | None
    #: whether the account's address must be verified first
    verified: bool
    #: whether the account must have two-factor sign-in on (PyPI's rule for maintainers)
    two_factor: bool = False


RULES: dict[Permission, Rule] = {
    Permission.BROWSE: Rule("read", None, verified=False),
    Permission.REQUEST: Rule("download", None, verified=True),
    Permission.DOWNLOAD: Rule("download", None, verified=True),
    # Inference uses the model as a download would, so it takes the download scope: a read
    # token stays read-only (it lists nothing it could not already see).
    Permission.INFER: Rule("download", None, verified=True),
    Permission.ACCOUNT: Rule(None, None, verified=False),
    # A token never mints or revokes tokens: a leaked one cannot widen or entrench itself.
    Permission.TOKENS: Rule(None, None, verified=True),
    # A write about oneself, as asking for a release is: the download scope, not read.
    Permission.DERIVE: Rule("download", None, verified=True),
    Permission.REVIEW: Rule("admin", ("admin", "reviewer"), verified=True, two_factor=True),
    Permission.ADMIN: Rule("admin", ("admin",), verified=True, two_factor=True),
    # Staff read how the lab's background work goes; retrying a job is an admin's decision.
    Permission.JOBS: Rule(None, ("admin", "staff"), verified=True, two_factor=True),
}


def check_permission(user: User, permission: Permission, *, token_scope: str | None) -> None:
    """PermissionDenied unless `user` (through a token of `token_scope`, or a session) may."""
    rule = RULES[permission]
    if token_scope is not None:
        if rule.scope is None:
            raise PermissionDenied(
                "API tokens cannot do this", hint="sign in with a browser to do it"
            )
        if not scope_allows(token_scope, rule.scope):
            raise PermissionDenied(
                f"this API token has the {token_scope!r} scope; {rule.scope!r} is needed",
                hint=f"create a token with the {rule.scope} scope",
            )
    if rule.roles is not None and user.role not in rule.roles:
        raise PermissionDenied(f"this needs the {' or '.join(rule.roles)} role")
    if rule.verified and not user.email_verified:
        raise PermissionDenied(
            f"verify your address {user.email} first",
            hint="open the link we mailed you, or ask for a new one with a password reset",
        )
    if rule.two_factor and two_factor.must_enrol(user):
        # Tokens too: a token of an admin without a second factor is a password's worth.
        raise TwoFactorRequired(
            f"the {user.role} role acts only with two-factor sign-in on",
            hint="turn it on at /account/two-factor",
        )


def login_redirect(request: Request) -> RedirectResponse:
    """Send an anonymous browser to sign in, then back here."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or what a trusted proxy forwarded (X-Forwarded-For).

    Forwarded headers are easy to forge, so they count only from RINGFENCE_TRUSTED_PROXIES.
    """
    peer = request.client.host if request.client else "unknown"
    trusted = trusted_proxies(get_services(request).settings.trusted_proxies)
    return trusted.client(peer, request.headers.get("x-forwarded-for"))


def bearer(request: Request) -> str | None:
    """The bearer token the request carries, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@dataclass(frozen=True)
class Account:
    """Who is signed in, as plain values a template can read after the session closed."""

    id: int
    email: str
    role: str


def _remember(request: Request, user: User | None) -> None:
    request.state.account = Account(user.id, user.email, user.role) if user else None
    request.state.caller = user.email if user else None


# Pages ---------------------------------------------------------------------------------


def session_user(request: Request, session: Session) -> User | None:
    """The signed-in user of this browser (the session cookie alone), or None."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    user = accounts.user_from_session(session, cookie) if cookie else None
    _remember(request, user)
    return user


def optional_page_user(request: Request, session: Session = Depends(db_session)) -> User | None:
    """A page's caller when signed in, None for anonymous (tokens are ignored on pages)."""
    return session_user(request, session)


def page_user(permission: Permission = Permission.ACCOUNT) -> Callable[..., User]:
    """A page dependency: the signed-in user, who must hold `permission`."""

    def dependency(request: Request, session: Session = Depends(db_session)) -> User:
        user = session_user(request, session)
        if user is None:
            raise AuthenticationRequired("sign in first", hint="open /login")
        check_permission(user, permission, token_scope=None)
        return user

    return dependency


# APIs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCaller:
    """An API caller: the token's holder and the token's scope."""

    user: User
    scope: str


def token_caller(request: Request, session: Session) -> TokenCaller | None:
    """The holder of the request's bearer token, or None without one (cookies are ignored).

    Raises AuthenticationRequired for a token that is unknown, revoked, expired or whose
    account is disabled: a wrong token is an error, not anonymity.
    """
    raw = bearer(request)
    if raw is None:
        _remember(request, None)
        return None
    token = user_from_token(session, raw)
    _remember(request, token.user)
    return TokenCaller(token.user, token.scope)


def api_caller(request: Request, session: Session, permission: Permission) -> User | None:
    """The token holder when the token may exercise `permission`; None when anonymous."""
    caller = token_caller(request, session)
    if caller is None:
        return None
    check_permission(caller.user, permission, token_scope=caller.scope)
    return caller.user


def optional_api_user(request: Request, session: Session = Depends(db_session)) -> User | None:
    """An API route's caller with a browsing token, or None for anonymous."""
    return api_caller(request, session, Permission.BROWSE)


def api_user(permission: Permission) -> Callable[..., User]:
    """An API dependency: the token holder, whose token and role cover `permission`."""

    def dependency(request: Request, session: Session = Depends(db_session)) -> User:
        user = api_caller(request, session, permission)
        if user is None:
            raise AuthenticationRequired(
                "this API needs a token", hint="send `Authorization: Bearer <token>`"
            )
        return user

    return dependency


# CSRF ----------------------------------------------------------------------------------


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
    """Refuse an unsafe page request without this browser's CSRF token.

    Every unsafe method is checked, whatever else the request carries: pages ignore bearer
    tokens, so a token never buys a way around the check.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
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


# Cookies -------------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return get_services(request).settings.base_url.startswith("https://")


def set_session_cookie(request: Request, response: Response, raw: str) -> None:
    """Attach a new session cookie: HttpOnly, SameSite=Lax, Secure behind https."""
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=int(SESSION_LIFETIME.total_seconds()),
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


def template_user(request: Request) -> Account | None:
    """The signed-in account for templates rendered by any area (looked up once per request)."""
    if hasattr(request.state, "account"):
        cached: Account | None = request.state.account
        return cached
    with get_services(request).sessions() as session:
        session_user(request, session)
    cached = request.state.account
    return cached


def caller_name(request: Request) -> str:
    """The known caller's address for audit records of refusals, else "anonymous"."""
    name = getattr(request.state, "caller", None)
    return str(name) if name else "anonymous"


templates.env.globals["csrf_input"] = csrf_input
templates.env.globals["csrf_token"] = csrf_token
templates.env.globals["account_user"] = template_user

"""What the access pages share: rendering with cookies, redirects, notices, commit then mail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from ringfence.errors import RingfenceError
from ringfence.web.deps import get_services
from ringfence.web.security import attach_anon_cookie
from ringfence.web.templating import templates

#: notices a redirect may ask a page to show (codes, so no text is reflected from a URL)
NOTICES = {
    "signed-up": "Check your mail: we sent a link to confirm your address.",
    "verified": "Your email address is verified. You can now request access to releases.",
    "reset-sent": "If that address has an account, we mailed it a link to choose a password.",
    "password-set": "Your password is set. Sign in with it.",
    "signed-out": "You are signed out.",
    "requested": "Your request was recorded.",
    "accepted": "You accepted the licence.",
    "appealed": "Your appeal was recorded; a reviewer will look at it again.",
    "decided": "Decisions recorded.",
    "circle-set": "The circle was changed.",
    "saved": "Saved.",
    "token-revoked": "The token was revoked.",
    "two-factor-off": "Two-factor sign-in is off.",
}


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """A page; also sets the pre-sign-in CSRF cookie when the page created one."""
    notice = NOTICES.get(request.query_params.get("done", ""))
    response = templates.TemplateResponse(
        request, template, {"notice": notice, **context}, status_code=status_code
    )
    attach_anon_cookie(request, response)
    return response


def redirect(url: str, done: str | None = None) -> RedirectResponse:
    """See Other to `url`, optionally with a notice code."""
    if done:
        url += ("&" if "?" in url else "?") + f"done={done}"
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """A local path to go back to after sign-in (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/account"


def form_error(
    request: Request,
    session: Session,
    template: str,
    context: Callable[[], dict[str, Any]],
    exc: RingfenceError,
) -> Response:
    """Undo the refused decision and show the form again with its one-line error.

    `context` is built after the rollback, so the page shows what is really recorded.
    """
    session.rollback()
    return render(
        request, template, {**context(), "error": exc.diagnostics()}, status_code=exc.http_status
    )


def commit_and_deliver(request: Request, session: Session) -> None:
    """Commit the decision, then send the mails it queued (SMTP backend)."""
    session.commit()
    services = get_services(request)
    services.mailer.deliver_pending(services.sessions)

"""Usage pages: a partner's own hosted grants (/account/usage) and every one (/admin/hosted)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.hosted import usage
from ringfence.web.deps import db_session
from ringfence.web.pages import render
from ringfence.web.security import Permission, page_user

router = APIRouter()


def _page(request: Request, session: Session, user: User | None, *, admin: bool) -> Response:
    grants = usage.hosted_grants(session, None if admin else user)
    rows = usage.grant_usages(session, grants)
    return render(
        request,
        "hosted/usage.html",
        {
            "admin": admin,
            "rows": rows,
            "calls": usage.last_calls(session, grants),
            "chart": usage.chart_png(rows) if rows else "",
        },
    )


@router.get("/account/usage", response_class=HTMLResponse, include_in_schema=False)
def my_usage(
    request: Request,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """My hosted grants: tokens per day, quota left, my last calls."""
    return _page(request, session, user, admin=False)


@router.get("/admin/hosted", response_class=HTMLResponse, include_in_schema=False)
def all_usage(
    request: Request,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Every hosted grant's use: for the lab's admins."""
    return _page(request, session, user, admin=True)

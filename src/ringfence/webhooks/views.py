"""The admins' webhook page: subscriptions, the delivery log, and redelivery."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.catalogue.services import get_release
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import redirect, render
from ringfence.web.security import Permission, page_user, verify_csrf
from ringfence.webhooks import services as webhooks
from ringfence.webhooks.events import ALL_TYPES

router = APIRouter()


@router.get("/admin/webhooks", response_class=HTMLResponse, include_in_schema=False)
def webhooks_page(
    request: Request,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Every subscription with its secret, and the newest deliveries (admin)."""
    secrets = get_services(request).secrets
    return render(
        request,
        "webhooks/admin.html",
        {
            "subscriptions": [
                (s, webhooks.secret(secrets, s.id)) for s in webhooks.subscriptions(session)
            ],
            "deliveries": webhooks.deliveries(session),
            "event_types": ALL_TYPES,
        },
    )


@router.post("/admin/webhooks", dependencies=[Depends(verify_csrf)], include_in_schema=False)
def add_subscription(
    request: Request,
    url: str = Form(""),
    release: str = Form(""),
    events: list[str] = Form([]),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Subscribe an endpoint to one release's events, or every release's (admin)."""
    target = get_release(session, release.strip()) if release.strip() else None
    webhooks.subscribe(get_services(request), session, user, url, events, release=target)
    session.commit()
    return redirect("/admin/webhooks", "saved")


@router.post(
    "/admin/webhooks/redeliver", dependencies=[Depends(verify_csrf)], include_in_schema=False
)
def redeliver(
    delivery: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Queue a delivery again, due now, with the same webhook-id (admin)."""
    webhooks.redeliver(session, delivery, actor=user.email)
    session.commit()
    return redirect("/admin/webhooks", "saved")

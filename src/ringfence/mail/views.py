"""The mail area's one page: the development outbox (admins, and only with `dev_outbox` on)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.errors import NotFound
from ringfence.mail import services as mail
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import render
from ringfence.web.security import Permission, page_user

router = APIRouter(include_in_schema=False)


def _outbox_on(request: Request) -> None:
    # Checked before who is asking: without the setting the page does not exist for anyone.
    if not get_services(request).settings.dev_outbox:
        raise NotFound("there is no outbox: mail goes out through SMTP")


@router.get("/outbox", response_class=HTMLResponse, dependencies=[Depends(_outbox_on)])
def outbox(
    request: Request,
    to: str = "",
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Development mail backend: queued mails, for admins, only when `dev_outbox` is on."""
    return render(request, "mail/outbox.html", {"mails": mail.outbox(session, to), "to": to})

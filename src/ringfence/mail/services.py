"""Outgoing mail: written to the `mails` table inside the decision's transaction, delivered after.

Queuing in the same transaction means a mail exists exactly when its decision was committed
(a rolled-back approval never announces itself), and a narrowing that revokes 10,000 grants
writes 10,000 rows with one bulk INSERT instead of holding the transaction open over SMTP.
Delivery is a separate step: `Mailer.deliver_pending`, run after the commit.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from ringfence.db import transaction, utcnow
from ringfence.mail.messages import Message
from ringfence.mail.models import Mail
from ringfence.operations import metrics
from ringfence.settings import Settings

log = logging.getLogger("ringfence.mail")

#: deliveries tried per mail before it is left for a person to look at
MAX_ATTEMPTS = 5
#: where a session keeps the count of mails it queued until its transaction ends
_QUEUED = "ringfence.mails_queued"


def _count_queued(session: Session, count: int) -> None:
    # Counted when the transaction commits: a rolled-back decision queued no mail.
    session.info[_QUEUED] = session.info.get(_QUEUED, 0) + count


@event.listens_for(Session, "after_commit")
def _queued_committed(session: Session) -> None:
    count = session.info.pop(_QUEUED, 0)
    if count:
        metrics.MAILS_QUEUED.inc(count)


@event.listens_for(Session, "after_soft_rollback")
def _queued_rolled_back(session: Session, previous: SessionTransaction) -> None:
    session.info.pop(_QUEUED, None)


def queue(session: Session, to: str, message: Message) -> None:
    """Queue one mail in the caller's transaction."""
    session.add(Mail(to=to, subject=message.subject[:200], body=message.body))
    _count_queued(session, 1)


def queue_many(session: Session, addresses: Iterable[str], message: Message) -> int:
    """Queue the same mail to each address with one bulk INSERT; returns how many."""
    now = utcnow()
    rows = [
        {
            "to": to,
            "subject": message.subject[:200],
            "body": message.body,
            "created_at": now,
            "attempts": 0,
        }
        for to in addresses
    ]
    if rows:
        session.execute(insert(Mail), rows)
        _count_queued(session, len(rows))
    return len(rows)


def outbox(session: Session, to: str = "", *, limit: int = 200) -> list[Mail]:
    """The newest queued mails (to one address when `to` is given), for the development outbox."""
    query = select(Mail).order_by(Mail.id.desc()).limit(limit)
    if to.strip():
        query = query.where(Mail.to == to.strip().lower())
    return list(session.scalars(query))


class Mailer(Protocol):
    """Delivers queued mails; chosen by `settings.mail_backend` in `ringfence.wiring`."""

    def deliver_pending(self, sessions: sessionmaker[Session]) -> int:
        """Deliver unsent mails after a commit; returns how many went out."""
        ...


class OutboxMailer:
    """Development backend: mails stay in the database and show on the admins' outbox page.

    Only with `settings.dev_outbox` (development, the demo): nothing leaves the machine, and
    every admin reads every mail there, password-reset links included. The server warns at
    start while it is on.
    """

    def deliver_pending(self, sessions: sessionmaker[Session]) -> int:
        return 0


class SMTPMailer:
    """Sends queued mails through an SMTP server (one connection per batch)."""

    def __init__(self, host: str, port: int, sender: str, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout

    def deliver_pending(self, sessions: sessionmaker[Session]) -> int:
        with transaction(sessions) as session:
            pending = list(
                session.scalars(
                    select(Mail)
                    .where(Mail.sent_at.is_(None), Mail.attempts < MAX_ATTEMPTS)
                    .order_by(Mail.id)
                    .limit(500)
                )
            )
            if not pending:
                return 0
            sent = 0
            try:
                with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                    for mail in pending:
                        mail.attempts += 1
                        message = EmailMessage()
                        message["From"] = self.sender
                        message["To"] = mail.to
                        message["Subject"] = mail.subject
                        message.set_content(mail.body)
                        try:
                            smtp.send_message(message)
                        except smtplib.SMTPException as exc:
                            mail.error = str(exc)[:500]
                            metrics.MAILS_FAILED.inc()
                            continue
                        mail.sent_at = utcnow()
                        mail.error = None
                        sent += 1
                        metrics.MAILS_SENT.inc()
            except (OSError, smtplib.SMTPException) as exc:
                # The server is down: keep the mails queued for the next delivery.
                log.warning("SMTP delivery to %s:%s failed: %s", self.host, self.port, exc)
                metrics.MAILS_FAILED.inc(len(pending) - sent)
                session.execute(
                    update(Mail)
                    .where(Mail.id.in_([m.id for m in pending]), Mail.sent_at.is_(None))
                    .values(error=str(exc)[:500])
                )
            return sent


class HeldMailer:
    """No way out: mails stay queued (and are never shown on a page) until SMTP is set up."""

    def deliver_pending(self, sessions: sessionmaker[Session]) -> int:
        return 0


def make_mailer(settings: Settings) -> Mailer:
    """The development outbox when `dev_outbox` is on, else the backend `mail_backend` names."""
    if settings.dev_outbox:
        return OutboxMailer()
    if settings.mail_backend == "smtp":
        return SMTPMailer(settings.smtp_host, settings.smtp_port, settings.mail_from)
    if settings.mail_backend == "none":
        log.warning("mail is not delivered (RINGFENCE_MAIL_BACKEND=none): it stays queued")
        return HeldMailer()
    from ringfence.errors import InvalidInput

    raise InvalidInput(
        f"unknown mail backend {settings.mail_backend!r}",
        hint="set RINGFENCE_MAIL_BACKEND to 'smtp' or 'none' (RINGFENCE_DEV_OUTBOX=1 for the "
        "development outbox)",
    )

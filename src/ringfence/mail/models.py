"""The mail table: the transactional outbox every decision writes its announcements to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ringfence.db import Base, UTCDateTime, utcnow


class Mail(Base):
    """An outgoing mail, written in the same transaction as the decision it announces.

    The SMTP backend delivers unsent rows after the commit; the outbox backend (development,
    demo) keeps them for the outbox page.
    """

    __tablename__ = "mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))

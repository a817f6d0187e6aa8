"""The audit event table; rows are only ever inserted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ringfence.db import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """One decision or action; `hash` chains it to the event before it."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    tag: Mapped[str] = mapped_column(String(96), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(512), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    #: the user the event concerns (a download's recipient, a link's holder), when there is one:
    #: evidence about a person is found by this id, never by a substring of an address.
    #: No foreign key: the log only ever grows and must not constrain other areas' rows.
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

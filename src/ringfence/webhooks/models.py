"""Webhook tables: who listens where, and every message with its delivery attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.db import Base, UTCDateTime, utcnow


class Subscription(Base):
    """An endpoint told of events on one release, or on every release (`release_id` None).

    Its signing secret is not stored: it is derived from the server's secrets and the
    subscription's id, so a copy of the database signs nothing.
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    #: the event types it wants (see webhooks.events.EVENT_TYPES)
    events: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    owner: Mapped[User] = relationship()
    release: Mapped[Release | None] = relationship()


class Delivery(Base):
    """One message to one subscription, retried with exponential backoff until it lands."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"), index=True)
    #: the `webhook-id` header: the same on every attempt, so receivers drop duplicates
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    event: Mapped[str] = mapped_column(String(40))
    #: the exact JSON body that is signed and sent
    body: Mapped[str] = mapped_column(Text)
    #: pending (to send, now or after a backoff), delivered, or failed (attempts spent)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    subscription: Mapped[Subscription] = relationship()

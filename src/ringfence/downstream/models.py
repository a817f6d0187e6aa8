"""Downstream tables: derivatives with their bases, and a release's planned widenings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.db import Base, UTCDateTime, utcnow

#: how a derivative came from its bases, as Hugging Face's `base_model_relation` names them
RELATIONS = ("finetune", "adapter", "merge", "quantized")
#: what ringfence knows of a derivative's lineage
LINEAGE = ("declared", "verified", "unverified")


class Derivative(Base):
    """A model built on one or more releases, registered by its owner."""

    __tablename__ = "derivatives"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    relation: Mapped[str] = mapped_column(String(16))
    #: where it lives outside ringfence, if anywhere (a Hub page, a repository)
    url: Mapped[str] = mapped_column(String(500), default="")
    #: the ringfence release that hosts its weights, if ringfence hosts them
    hosted_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), unique=True)
    #: sha256 of the weights file it was registered or uploaded with
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    #: declared (nothing to check against), verified or unverified
    lineage: Mapped[str] = mapped_column(String(16), default="declared")
    #: why: what the check measured, in one line
    lineage_note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    owner: Mapped[User] = relationship()
    hosted_release: Mapped[Release | None] = relationship()
    bases: Mapped[list[Release]] = relationship(secondary="derivative_bases", order_by=Release.id)


class DerivativeBase(Base):
    """One base release of a derivative (a merge has several)."""

    __tablename__ = "derivative_bases"

    derivative_id: Mapped[int] = mapped_column(ForeignKey("derivatives.id"), primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True, index=True)


class ScheduleStep(Base):
    """A planned widening: `release` goes to `circle` on `due_at` if nothing holds it."""

    __tablename__ = "schedule_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    circle: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: planned (waiting for its date, or held), done, or skipped (the release was already wider)
    state: Mapped[str] = mapped_column(String(16), default="planned")
    #: the holds that kept it from happening at its last try, as a person reads them
    held_reason: Mapped[str] = mapped_column(String(500), default="")
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    release: Mapped[Release] = relationship()


class ReviewerNotice(Base):
    """How a reviewer hears of new requests: each (soon after), daily (a digest) or off."""

    __tablename__ = "reviewer_notices"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(8), default="each")
    #: requests that arrived after this were not yet told of
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

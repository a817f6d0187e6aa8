"""Organisation tables: institutions (with their verified mail domains) and their NDAs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.accounts.models import User
from ringfence.db import Base, UTCDateTime, utcnow


class Institution(Base):
    """A university, company or lab whose members may be partners once it signs an NDA."""

    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: email domains an admin verified as belonging to the institution (lowercase)
    domains: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ndas: Mapped[list[NDA]] = relationship(back_populates="institution", order_by="NDA.id")


class NDA(Base):
    """A signed non-disclosure agreement; active once countersigned by a lab admin, until expiry."""

    __tablename__ = "ndas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    #: sha256 of the signed document in the blob store
    document_sha256: Mapped[str] = mapped_column(String(64))
    document_name: Mapped[str] = mapped_column(String(200))
    signatory: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    countersigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    countersigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    institution: Mapped[Institution] = relationship(back_populates="ndas")
    countersigned_by: Mapped[User | None] = relationship()

    def is_active(self, now: datetime) -> bool:
        """Countersigned, not revoked and not past its expiry."""
        return (
            self.countersigned_at is not None and self.revoked_at is None and self.expires_at > now
        )

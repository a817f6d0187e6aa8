"""Fingerprint tables: the recipients of a release; a codeword is derived, never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ringfence.db import Base, UTCDateTime, utcnow


class Recipient(Base):
    """Someone who received (or may receive) a fingerprinted copy of a release.

    `index` is dense per release (0, 1, 2, ...): the codeword is HMAC(release key, index), so
    tracing regenerates every recipient's codeword from this table alone.
    """

    __tablename__ = "fingerprint_recipients"
    __table_args__ = (
        UniqueConstraint("release_id", "index"),
        # named: the naming convention keys on the first column only and would repeat a name
        UniqueConstraint("release_id", "email", name="uq_fingerprint_recipients_release_id_email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    #: the recipient's e-mail address or another stable user reference
    email: Mapped[str] = mapped_column(String(320))
    #: recipients made up for trace experiments, never real people
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

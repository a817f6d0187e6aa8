"""Account tables: people, their browser sessions, API tokens, recovery codes, limit counters."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.db import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from ringfence.organisations.models import Institution

#: roles from the most to the least trusted
ROLES = ("admin", "reviewer", "staff", "member")
#: roles that belong to the lab itself (the in-house circle)
LAB_ROLES = ("admin", "reviewer", "staff")
#: API token scopes; `admin` implies `download` implies `read`
SCOPES = ("read", "download", "admin")


class User(Base):
    """A person with an account; `role` says what they may do, `institution` whom they belong to."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: stored lowercased; the unique key people sign in with
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    #: argon2id hash; None until the person sets a password
    password_hash: Mapped[str | None] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="member")
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the TOTP secret, AES-GCM sealed under the server's "accounts:totp" key; set at the start
    #: of enrolment, and in force only once `two_factor_enabled_at` is set
    totp_secret_sealed: Mapped[str | None] = mapped_column(String(200))
    two_factor_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the newest TOTP time-step accepted, so no code is accepted twice
    totp_last_step: Mapped[int | None] = mapped_column(Integer)

    institution: Mapped[Institution | None] = relationship()

    @property
    def email_verified(self) -> bool:
        """Whether the person proved they read mail at `email`."""
        return self.email_verified_at is not None

    @property
    def is_lab(self) -> bool:
        """Whether the person is the lab's own (admin, reviewer or staff)."""
        return self.role in LAB_ROLES

    @property
    def two_factor_enabled(self) -> bool:
        """Whether signing in needs a TOTP or recovery code after the password."""
        return self.two_factor_enabled_at is not None and self.totp_secret_sealed is not None


class RecoveryCode(Base):
    """A one-time code that stands in for a lost authenticator; only its sha256 is stored."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser; the cookie holds a random token, the table only its sha256."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    user: Mapped[User] = relationship()


class APIToken(Base):
    """A bearer token for the API and the client CLI; shown once, stored as its sha256."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    #: the first characters of the token, so people can tell their tokens apart
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class RateLimitHit(Base):
    """One counted event (a mail to an address, a request from an IP) for database limits."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# `User.institution` names a table of the organisations area: map it whenever users are mapped.
from ringfence.organisations import models as _organisations  # noqa: E402, F401

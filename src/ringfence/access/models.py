"""Access tables: accounts, sessions, tokens, institutions, NDAs, acceptances, requests, grants.

Rows that record a decision (acceptances, grants, requests) are updated in place only through
`ringfence.access` services, and every change also lands in the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.catalogue.models import Release
from ringfence.db import Base, UTCDateTime, utcnow

#: circles from the narrowest to the widest; a release admits everyone at or inside its circle
CIRCLES = ("in-house", "partners", "research", "public")
#: roles from the most to the least trusted
ROLES = ("admin", "reviewer", "staff", "member")
#: roles that belong to the lab itself (the in-house circle)
LAB_ROLES = ("admin", "reviewer", "staff")
#: API token scopes; `admin` implies `download` implies `read`
SCOPES = ("read", "download", "admin")


class Institution(Base):
    """A university, company or lab whose members may be partners once it signs an NDA."""

    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: email domains an admin verified as belonging to the institution (lowercase)
    domains: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ndas: Mapped[list[NDA]] = relationship(back_populates="institution", order_by="NDA.id")


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

    institution: Mapped[Institution | None] = relationship()

    @property
    def email_verified(self) -> bool:
        """Whether the person proved they read mail at `email`."""
        return self.email_verified_at is not None

    @property
    def is_lab(self) -> bool:
        """Whether the person is the lab's own (admin, reviewer or staff)."""
        return self.role in LAB_ROLES


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


class AccessPolicy(Base):
    """How a release is asked for: the request form, auto-approval rules and grant lifetime."""

    __tablename__ = "access_policies"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    #: [{"name", "label", "type": text|select|checkbox|country|date, "required", "options"}]
    fields: Mapped[list[Any]] = mapped_column(default=list)
    #: [{"kind": "email_domain", "domains": [...]}, {"kind": "partner_nda"}, {"kind": "staff"}]
    rules: Mapped[list[Any]] = mapped_column(default=list)
    grant_days: Mapped[int] = mapped_column(Integer, default=365)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LicenceAcceptance(Base):
    """One click-through: who accepted which licence text for which release, when and from where."""

    __tablename__ = "licence_acceptances"
    __table_args__ = (
        Index("ix_licence_acceptances_lookup", "user_id", "release_id", "licence_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    #: `slug@version` as shown
    licence_ref: Mapped[str] = mapped_column(String(80))
    #: sha256 of the exact text the person was shown
    text_sha256: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class AccessRequest(Base):
    """A person asking for a release; decided by a rule or a reviewer, with a readable reason."""

    __tablename__ = "access_requests"
    __table_args__ = (
        UniqueConstraint("user_id", "release_id"),
        Index("ix_access_requests_state", "state", "release_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    #: pending, approved, rejected, expired or revoked
    state: Mapped[str] = mapped_column(String(16), default="pending")
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the reason for the latest decision, readable by the requester
    reason: Mapped[str] = mapped_column(String(500), default="")
    #: "web" or "api"
    via: Mapped[str] = mapped_column(String(8), default="web")
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    appeal: Mapped[str | None] = mapped_column(Text)
    appealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()
    release: Mapped[Release] = relationship()


class InstitutionGrant(Base):
    """Access for the members of an institution, up to `seats` people."""

    __tablename__ = "institution_grants"
    __table_args__ = (UniqueConstraint("institution_id", "release_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    seats: Mapped[int] = mapped_column(Integer)
    #: active, revoked or expired
    state: Mapped[str] = mapped_column(String(16), default="active")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    institution: Mapped[Institution] = relationship()


class Grant(Base):
    """The right of one person to download one release, until `expires_at` or revocation.

    Public interface for other areas: `id`, `user_id`, `release_id`, `state` ("active",
    "revoked" or "expired"), `expires_at`, `revoked_reason`. Check it with
    `ringfence.access.services.authorise_download`, never by reading `state` alone.
    """

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("user_id", "release_id"),
        Index("ix_grants_release_state", "release_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    state: Mapped[str] = mapped_column(String(16), default="active")
    #: "request", "direct", "rule:<kind>" or "institution"
    via: Mapped[str] = mapped_column(String(32), default="request")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("access_requests.id"))
    institution_grant_id: Mapped[int | None] = mapped_column(ForeignKey("institution_grants.id"))
    granted_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str] = mapped_column(String(500), default="")
    #: how often this row was (re-)issued; links belong to one issuance
    issuance: Mapped[int] = mapped_column(Integer, default=1)

    user: Mapped[User] = relationship()
    release: Mapped[Release] = relationship()


class RateLimitHit(Base):
    """One counted event (a mail to an address, a request from an IP) for database limits."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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

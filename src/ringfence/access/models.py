"""Access tables: request policies, licence acceptances, requests, grants, institution grants.

Rows that record a decision (acceptances, grants, requests) are updated in place only through
`ringfence.access` services, and every change also lands in the audit log. The people they
name live in `ringfence.accounts`, institutions in `ringfence.organisations`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.db import Base, UTCDateTime, utcnow
from ringfence.organisations.models import Institution

#: circles from the narrowest to the widest; a release admits everyone at or inside its circle
CIRCLES = ("in-house", "partners", "research", "public")


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
    "revoked" or "expired"), `expires_at`, `revoked_reason`, `mode` ("download" or "hosted").
    Check it with `ringfence.access.services.authorise_download` (or `authorise_hosted`),
    never by reading `state` alone.
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
    #: "download" (links, Hub, files) or "hosted" (the inference endpoint only, no byte)
    mode: Mapped[str] = mapped_column(String(16), default="download", server_default="download")

    user: Mapped[User] = relationship()
    release: Mapped[Release] = relationship()

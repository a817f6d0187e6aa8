"""Hosted-access tables: per-grant quotas and terms, a backend per release, the call log.

A hosted grant (`Grant.mode == "hosted"`) is served only through the inference endpoint.
Quotas live in the database so that they hold across server processes; the call log is the
meter (requests and tokens per window are counted from it) and the audit trail of each call.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ringfence.db import Base, UTCDateTime, utcnow


class HostedQuota(Base):
    """A hosted grant's limits, and whether its terms let the lab keep the texts."""

    __tablename__ = "hosted_quotas"

    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), primary_key=True)
    requests_per_minute: Mapped[int] = mapped_column(Integer, default=60)
    tokens_per_minute: Mapped[int] = mapped_column(Integer, default=20_000)
    tokens_per_day: Mapped[int] = mapped_column(Integer, default=500_000)
    parallel: Mapped[int] = mapped_column(Integer, default=4)
    #: the most tokens one call may generate
    max_tokens: Mapped[int] = mapped_column(Integer, default=512)
    #: the grant's terms let the lab keep prompts and outputs (else only their hashes)
    keep_text: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HostedBackend(Base):
    """Where a release's generation runs: embedded (its own weights here) or an upstream URL."""

    __tablename__ = "hosted_backends"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    #: "embedded" or "upstream"
    kind: Mapped[str] = mapped_column(String(16), default="embedded")
    #: an OpenAI-compatible base URL ending in /v1 (upstream only)
    url: Mapped[str] = mapped_column(String(512), default="")
    #: the model id the upstream engine knows the release by
    upstream_model: Mapped[str] = mapped_column(String(200), default="")
    #: the environment variable holding the engine's API key (the key is never stored here)
    key_env: Mapped[str] = mapped_column(String(100), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HostedCall(Base):
    """One inference call: who, which grant, token counts, hashes (texts only when allowed)."""

    __tablename__ = "hosted_calls"
    __table_args__ = (
        Index("ix_hosted_calls_grant_started", "grant_id", "started_at"),
        Index("ix_hosted_calls_grant_state", "grant_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    #: "chat.completions" or "completions"
    endpoint: Mapped[str] = mapped_column(String(32))
    #: running, done, failed or cut (access ended mid-stream)
    state: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    prompt_sha256: Mapped[str] = mapped_column(String(64), default="")
    output_sha256: Mapped[str] = mapped_column(String(64), default="")
    prompt_text: Mapped[str | None] = mapped_column(Text)
    output_text: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str] = mapped_column(String(500), default="")

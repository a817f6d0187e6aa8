"""Incident tables: a reported leak, its evidence with a chain of custody, and actions taken.

An incident is opened from a leak report (a file, a URL or an OpenAI-compatible endpoint).
Evidence rows (suspect files, trace results, black-box attributions) are append-only; each
custody step names who did what, when, from where, with the evidence's sha256 at that step
and a hash chained to the step before, so an altered or reordered step is visible.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.catalogue.models import Release
from ringfence.db import Base, UTCDateTime, utcnow

#: what a leak report points at
KINDS = ("file", "url", "endpoint")
STATES = ("open", "closed")


class Incident(Base):
    """A reported leak of (possibly) one release."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the release it concerns; None until a trace or the reporter names it
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: where the leak was seen: a URL, an endpoint's base URL, or the file's name
    source: Mapped[str] = mapped_column(String(2000))
    summary: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    #: while open, the release may not widen its circle
    holds_widening: Mapped[bool] = mapped_column(Boolean, default=True)
    opened_by: Mapped[str] = mapped_column(String(320))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    opened_ip: Mapped[str | None] = mapped_column(String(64))
    closed_by: Mapped[str | None] = mapped_column(String(320))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str] = mapped_column(Text, default="")
    #: the takedown notice as last edited (drafted from the evidence)
    notice: Mapped[str] = mapped_column(Text, default="")
    notice_sent_to: Mapped[str | None] = mapped_column(String(320))
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    release: Mapped[Release | None] = relationship()
    evidence: Mapped[list[Evidence]] = relationship(
        back_populates="incident", order_by="Evidence.id"
    )
    actions: Mapped[list[IncidentAction]] = relationship(order_by="IncidentAction.id")


class Evidence(Base):
    """One piece of evidence: a suspect file's hashes, a trace report, an attribution."""

    __tablename__ = "incident_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    #: "suspect", "trace" or "attribution"
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    #: a trace's summary and records, an attribution's report, a file's per-file hashes
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    added_by: Mapped[str] = mapped_column(String(320))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    incident: Mapped[Incident] = relationship(back_populates="evidence")
    custody: Mapped[list[CustodyStep]] = relationship(order_by="CustodyStep.id")


class CustodyStep(Base):
    """Who handled a piece of evidence, how, when and from where, with its hash then."""

    __tablename__ = "incident_custody"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evidence_id: Mapped[int] = mapped_column(ForeignKey("incident_evidence.id"), index=True)
    #: "received", "stored", "traced", "exported"
    step: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the evidence's sha256 as seen at this step
    sha256: Mapped[str | None] = mapped_column(String(64))
    #: sha256 over the previous step's chain hash and this step's content
    chain: Mapped[str] = mapped_column(String(64))


class IncidentAction(Base):
    """What the lab did about an incident (grant revoked, circle narrowed, notice sent)."""

    __tablename__ = "incident_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the audit event that recorded it
    audit_seq: Mapped[int | None] = mapped_column(Integer)

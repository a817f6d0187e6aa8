"""Gate tables: a release's provenance, gate runs with their results, and admins' overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.catalogue.models import Release
from ringfence.db import Base, UTCDateTime, utcnow


class Provenance(Base):
    """A release's provenance manifest, kept with it and never served to recipients
    (it names the private samples and canaries the gates probe with)."""

    __tablename__ = "gate_provenances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), unique=True)
    #: the validated document, as parsed from YAML
    document: Mapped[dict[str, Any]] = mapped_column()
    #: sha256 of the file as given
    sha256: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(320))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    release: Mapped[Release] = relationship()


class GateRun(Base):
    """One run of the gate suite over a release: its state, progress and widest circle."""

    __tablename__ = "gate_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    #: "running", "done" or "failed"
    state: Mapped[str] = mapped_column(String(16), default="running")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    #: the policy's name and version the run was judged by
    policy: Mapped[str] = mapped_column(String(128), default="")
    #: the widest circle the gates allow (before overrides); set when done
    widest_circle: Mapped[str | None] = mapped_column(String(16))
    #: the release report (model-card sections, figures, plots' data); set when done
    report: Mapped[dict[str, Any] | None] = mapped_column()
    started_by: Mapped[str] = mapped_column(String(320))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    release: Mapped[Release] = relationship()
    results: Mapped[list[GateResult]] = relationship(
        back_populates="run", order_by="GateResult.id", cascade="all, delete-orphan"
    )


class GateResult(Base):
    """One gate's verdict in a run: passed or not, its figures, and the circle it caps."""

    __tablename__ = "gate_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("gate_runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    passed: Mapped[bool] = mapped_column(Boolean)
    #: the widest circle this gate allows
    cap: Mapped[str] = mapped_column(String(16))
    figures: Mapped[dict[str, Any]] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)

    run: Mapped[GateRun] = relationship(back_populates="results")


class Override(Base):
    """An admin's recorded decision to allow a release wider than its gates do.

    Widening past in-house needs a second admin's sign-off: until then it is "pending".
    """

    __tablename__ = "gate_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    circle: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    #: "pending" (awaiting sign-off), "active" or "withdrawn"
    state: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by: Mapped[str] = mapped_column(String(320))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_off_by: Mapped[str | None] = mapped_column(String(320))
    signed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    release: Mapped[Release] = relationship()

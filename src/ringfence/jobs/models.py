"""The jobs table: every background job's record (state, attempts, progress, last error).

On SQLite it is also the queue itself (`ringfence.jobs.table_queue` claims rows from it); on
PostgreSQL procrastinate dispatches each row's run and this row stays what a person reads
(procrastinate keeps neither progress, nor a subject, nor the error text).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ringfence.db import Base, UTCDateTime, utcnow

#: a job's states: waiting (first run or a retry after backoff), running, and the two ends
STATES = ("queued", "running", "succeeded", "failed")


class Job(Base):
    """One background job: a registered task's name, its keyword arguments and its fate."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_scheduled_at", "state", "scheduled_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(128), index=True)
    queue: Mapped[str] = mapped_column(String(64))
    #: what the job is about ("release:3:user:5"), so a page finds the latest job of its object
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)
    #: set once per periodic slot ("access.expire@29410"): the unique index lets one worker
    #: of many enqueue it
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    #: not before: the time of the next run (now, or later after a failure's backoff)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: refreshed while the job runs: a claim whose heartbeat is stale belongs to a dead worker
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str | None] = mapped_column(String(1000))
    #: the procrastinate job that runs it (PostgreSQL), for a manual retry
    dispatch_id: Mapped[int | None] = mapped_column(Integer)

"""The job queue of the embedded SQLite default: a table of our own, claimed row by row.

Why not procrastinate here: procrastinate has connectors for PostgreSQL only (psycopg,
aiopg, psycopg2); it relies on `FOR UPDATE SKIP LOCKED`, LISTEN/NOTIFY and PL/pgSQL functions
that SQLite lacks. The embedded default still needs the same durable, transactional queue, so
the `jobs` table is the queue here, with the same states, attempts and backoff:

- a worker claims one due job with a single `UPDATE ... WHERE id = (SELECT ...) RETURNING`:
  SQLite runs each write statement under its one writer lock, so two workers (threads or
  server processes) never claim the same row;
- a running job's heartbeat is refreshed every few seconds; a claim whose heartbeat is older
  than `settings.job_stale_after_s` belongs to a worker that died and is claimed again
  (counted as one more attempt).

The same class works on PostgreSQL too (the statement is atomic there as well); the wiring
uses procrastinate there.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, or_, select, update

from ringfence.db import transaction, utcnow
from ringfence.jobs.models import Job
from ringfence.jobs.services import run_job

if TYPE_CHECKING:
    from ringfence.wiring import Services

log = logging.getLogger("ringfence.jobs")


class TableQueue:
    """Claims and runs jobs from the `jobs` table (see the module's docstring)."""

    def __init__(self, services: Services, *, poll: float = 1.0) -> None:
        self.services = services
        self.poll = poll
        self.stale_after = timedelta(seconds=services.settings.job_stale_after_s)
        self._current: int | None = None

    def _due(self) -> ColumnElement[bool]:
        now = utcnow()
        return or_(
            and_(Job.state == "queued", Job.scheduled_at <= now),
            and_(Job.state == "running", Job.heartbeat_at < now - self.stale_after),
        )

    def claim(self) -> tuple[int, int] | None:
        """Take the next due job for this worker: (job id, attempt), or None."""
        now = utcnow()
        due = self._due()
        with transaction(self.services.sessions) as session:
            nxt = select(Job.id).where(due).order_by(Job.scheduled_at, Job.id).limit(1)
            row = session.execute(
                update(Job)
                .where(Job.id == nxt.scalar_subquery(), due)
                .values(state="running", attempts=Job.attempts + 1, heartbeat_at=now)
                .returning(Job.id, Job.attempts)
            ).first()
        return (int(row[0]), int(row[1])) if row else None

    def run_one(self) -> bool:
        """Claim and run one due job; False when none is due."""
        claimed = self.claim()
        if claimed is None:
            return False
        job_id, attempt = claimed
        self._current = job_id  # the heartbeat thread of `work` keeps its claim fresh
        try:
            run_job(self.services, job_id, attempt)
        finally:
            self._current = None
        return True

    def _beat(self, done: threading.Event) -> None:
        # One thread per worker (not per job): a job's claim stays fresh while it runs.
        every = max(self.stale_after.total_seconds() / 4, 0.05)
        while not done.wait(every):
            job_id = self._current
            if job_id is None:
                continue
            try:
                with transaction(self.services.sessions) as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.state == "running")
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # the database is down: the job itself will notice
                log.warning("heartbeat of job %s failed", job_id, exc_info=True)

    def work(self, *, burst: bool = False, stop: threading.Event | None = None) -> int:
        """Run due jobs until none is due (`burst`) or until `stop` is set."""
        done = 0
        stop = stop or threading.Event()
        finished = threading.Event()
        heart = threading.Thread(target=self._beat, args=(finished,), daemon=True)
        heart.start()
        try:
            while not stop.is_set():
                if self.run_one():
                    done += 1
                    continue
                if burst:
                    break
                stop.wait(self.poll)
        finally:
            finished.set()
            heart.join()
        return done

    def recover_stalled(self) -> int:
        """Stale claims need no separate pass here: `claim` takes them over (returns 0)."""
        return 0

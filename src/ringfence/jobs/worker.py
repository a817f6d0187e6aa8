"""A job worker: the backend's job loop, plus the schedule of periodic tasks and the gauges.

The web app runs one per server process while it serves (unless `settings.serve_jobs` is
off); `ringfence worker` runs one standalone. Any number may run at once: each job is
claimed by one of them, each periodic slot enqueued by one of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ringfence.db import utcnow
from ringfence.jobs import services as jobs

if TYPE_CHECKING:
    from ringfence.wiring import Services

log = logging.getLogger("ringfence.jobs")
#: seconds between two looks at the schedule (and updates of the queue-depth gauges)
TICK = 5.0


def tick(services: Services, since: Any) -> None:
    """Enqueue the periodic jobs now due and report the queues' depths."""
    jobs.schedule_periodic(services.sessions, services.settings, since=since)
    with services.sessions() as session:
        jobs.report_depths(session)


class Worker:
    """Runs jobs in a daemon thread, and the periodic schedule in another, until stopped."""

    def __init__(self, services: Services, *, tick_every: float = TICK) -> None:
        self.services = services
        self.tick_every = tick_every
        self.started = utcnow()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._jobs, name="jobs-worker", daemon=True),
            threading.Thread(target=self._schedule, name="jobs-schedule", daemon=True),
        ]

    def start(self) -> None:
        """Start both threads."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the job in progress."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)

    def wait(self) -> None:
        """Block until stopped (a standalone worker's main thread)."""
        while not self._stop.wait(1.0):
            pass

    def _jobs(self) -> None:
        while not self._stop.is_set():
            try:
                self.services.jobs.work(stop=self._stop)
            except Exception:  # the database went away: try again shortly
                log.exception("job worker stopped unexpectedly; restarting it")
                self._stop.wait(self.tick_every)

    def _schedule(self) -> None:
        while not self._stop.is_set():
            try:
                tick(self.services, self.started)
            except Exception:
                log.warning("job schedule pass failed", exc_info=True)
            self._stop.wait(self.tick_every)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run a job worker in this server process while it serves (`settings.serve_jobs`)."""
    services: Services = app.state.services
    if not services.settings.serve_jobs:
        yield
        return
    worker = Worker(services)
    worker.start()
    app.state.job_worker = worker
    try:
        yield
    finally:
        worker.stop()

"""Scheduled access work: expiring grants and requests while the web app serves.

Each server process runs one `ExpiryWorker`; its passes are safe to overlap with another
process's (see `ringfence.access.expiry`). `ringfence expire` runs one pass, for cron.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from ringfence.access import expiry
from ringfence.db import transaction
from ringfence.operations import metrics
from ringfence.wiring import Services

log = logging.getLogger("ringfence.access")


def run_expiry(
    services: Services, *, now: datetime | None = None, actor: str = "system"
) -> expiry.ExpiryRun:
    """One expiry pass in one transaction, then the mails it queued go out."""
    settings = services.settings
    with transaction(services.sessions) as session:
        done = expiry.expire_due(
            session,
            request_lifetime_days=settings.request_lifetime_days,
            now=now,
            actor=actor,
            base_url=settings.base_url,
        )
    if done.grants or done.requests:
        services.mailer.deliver_pending(services.sessions)
    return done


class ExpiryWorker:
    """A daemon thread that runs an expiry pass every `interval` seconds."""

    def __init__(self, services: Services, interval: float | None = None) -> None:
        self.services = services
        self.interval = interval or services.settings.expiry_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expiry-worker", daemon=True)

    def start(self) -> None:
        """Start the schedule (the first pass after one interval)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass in progress."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_expiry(self.services)
            except Exception:  # the next pass tries again; the server keeps serving
                log.exception("expiry pass failed")
                metrics.JOB_FAILURES.labels("expiry").inc()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the expiry worker while the web app runs."""
    worker = ExpiryWorker(app.state.services)
    worker.start()
    app.state.expiry_worker = worker
    try:
        yield
    finally:
        worker.stop()

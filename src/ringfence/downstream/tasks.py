"""Scheduled downstream work while the web app serves: schedule steps, reviewers' notices of
new requests, webhook deliveries.

Each server process runs one `DownstreamWorker` (settings.downstream_interval_s; 0: none, as
when a job queue runs `webhooks.services.deliver_due` and `schedules.run_due` instead). Passes
in several processes may overlap: a delivery is claimed before it is sent, and a schedule step
runs in one transaction through `set_circle`, which locks nothing twice.
`ringfence webhooks deliver` and `ringfence schedule run` run one pass each, for cron.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ringfence.downstream import requests, schedules
from ringfence.operations import metrics
from ringfence.webhooks import services as webhooks
from ringfence.wiring import Services

log = logging.getLogger("ringfence.downstream")


class DownstreamWorker:
    """A daemon thread: due schedule steps, then due webhook deliveries, every `interval` s."""

    def __init__(self, services: Services, interval: float) -> None:
        self.services = services
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="downstream-worker", daemon=True)

    def start(self) -> None:
        """Start the passes (the first after one interval)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass in progress."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, job in (
                ("schedule", schedules.run_due),
                ("review-notices", requests.notify_reviewers),
                ("webhooks", webhooks.deliver_due),
            ):
                try:
                    job(self.services)
                except Exception:  # the next pass tries again; the server keeps serving
                    log.exception("%s pass failed", name)
                    metrics.JOB_FAILURES.labels(name).inc()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the downstream worker while the web app runs (unless its interval is 0)."""
    interval = app.state.services.settings.downstream_interval_s
    worker = DownstreamWorker(app.state.services, interval) if interval > 0 else None
    if worker is not None:
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()

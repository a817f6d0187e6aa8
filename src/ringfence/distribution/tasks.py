"""Background work: computing and signing recipients' manifests once their grant is active.

A single worker thread per server process polls for active grants whose holder has no
manifest yet (a new grant is picked up within `POLL_SECONDS`) and computes them one at a time,
so a burst of approvals never competes with downloads for more than one core. Several
processes may run it (`ringfence serve --workers N`): each manifest is claimed by one of them
first (`services.claim_manifest`), so none is computed twice. Each pass sets
`ringfence_job_queue_depth{queue="manifests"}` and counts failures in
`ringfence_job_failures_total{job="manifest"}` (the names a durable queue will report under).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ringfence.distribution import services as dist
from ringfence.operations import metrics
from ringfence.wiring import Services

log = logging.getLogger("ringfence.distribution")
POLL_SECONDS = 2.0


def compute_pending(services: Services, limit: int | None = None) -> int:
    """Compute every pending manifest now (the CLI and tests call this); returns how many."""
    with services.sessions() as session:
        pending = dist.pending_manifests(session)
    depth = metrics.JOB_QUEUE_DEPTH.labels("manifests")
    depth.set(len(pending))
    done = 0
    for attempted, (release_id, user_id) in enumerate(pending, start=1):
        if limit is not None and done >= limit:
            break
        if not dist.claim_manifest(services, release_id, user_id):
            depth.set(len(pending) - attempted)
            continue  # computed meanwhile, or another server process is computing it
        try:
            dist.compute_manifest(services, release_id, user_id)
            done += 1
        except Exception as exc:  # a broken blob must not stop the others
            log.exception("manifest of release %s for user %s failed", release_id, user_id)
            metrics.JOB_FAILURES.labels("manifest").inc()
            dist.mark_failed(services, release_id, user_id, f"{type(exc).__name__}: {exc}")
        depth.set(len(pending) - attempted)  # computed or failed, it no longer waits
    return done


class ManifestWorker:
    """A daemon thread that keeps recipients' manifests computed."""

    def __init__(self, services: Services, poll: float = POLL_SECONDS) -> None:
        self.services = services
        self.poll = poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="manifest-worker", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def kick(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the manifest in progress."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if compute_pending(self.services, limit=1):
                    continue  # more may be waiting
            except Exception:
                log.exception("manifest worker pass failed")
                metrics.JOB_FAILURES.labels("manifest").inc()
            self._wake.wait(self.poll)
            self._wake.clear()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the manifest worker while the web app runs."""
    services: Services = app.state.services
    worker = ManifestWorker(services)
    worker.start()
    app.state.manifest_worker = worker
    try:
        yield
    finally:
        worker.stop()

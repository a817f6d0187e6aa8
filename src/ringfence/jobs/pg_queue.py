"""The job queue on PostgreSQL: procrastinate dispatches and retries, our `jobs` row records.

procrastinate (an established PostgreSQL task queue: `FOR UPDATE SKIP LOCKED` fetching,
LISTEN/NOTIFY wake-ups, worker heartbeats, retry strategies) runs each job. Its schema comes
with our Alembic migration 0010 (procrastinate's own schema.sql, through its SchemaManager),
so `ringfence init` and upgrades set it up.

- Enqueueing calls procrastinate's SQL function `procrastinate_defer_jobs_v1` through the
  caller's SQLAlchemy connection (`defer`): the job is part of the caller's transaction and
  no second pool is needed to enqueue.
- A procrastinate task is registered per ringfence task, with
  `RetryStrategy(max_attempts=retries, exponential_wait=backoff)`: the same
  `backoff ** attempt` seconds the table queue waits.
- A worker killed mid-job leaves its job "doing" with a stale heartbeat; `recover_stalled`
  (run by every worker as it starts and then every minute) queues such jobs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

from ringfence.jobs import registry
from ringfence.jobs.models import Job
from ringfence.jobs.services import run_job

if TYPE_CHECKING:
    import procrastinate

    from ringfence.wiring import Services

log = logging.getLogger("ringfence.jobs")

_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, 0, NULL, NULL, "
    "CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1])) AS id"
)
#: how often a long-running worker looks for stalled jobs (seconds)
RECOVERY_EVERY = 60.0


def defer(session: Session, job: Job) -> None:
    """Defer `job` to procrastinate in the caller's transaction (its defer SQL function)."""
    args = json.dumps({"job_id": job.id})
    job.dispatch_id = int(
        session.execute(_DEFER, {"queue": job.queue, "task": job.task, "args": args}).scalar_one()
    )


def conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (psycopg's own form)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class ProcrastinateQueue:
    """Runs ringfence's tasks with procrastinate's worker (see the module's docstring)."""

    def __init__(self, services: Services, *, poll: float = 1.0) -> None:
        self.services = services
        self.poll = poll
        self.stale_after = services.settings.job_stale_after_s
        self.ran = 0

    def _app(self) -> procrastinate.App:
        import procrastinate

        connector = procrastinate.PsycopgConnector(
            conninfo=conninfo(self.services.settings.resolved_database_url),
            min_size=1,
            max_size=4,
        )
        app = procrastinate.App(connector=connector)
        for task in registry.load_tasks().values():
            retry: procrastinate.RetryStrategy | bool = (
                procrastinate.RetryStrategy(
                    max_attempts=task.retries, exponential_wait=task.backoff
                )
                if task.retries
                else False
            )
            app.task(name=task.name, queue=task.queue, pass_context=True, retry=retry)(
                self._runner()
            )
        return app

    def _runner(self) -> Any:
        def run(context: procrastinate.JobContext, job_id: int) -> None:
            assert context.job is not None
            self.ran += 1
            error = run_job(self.services, job_id, context.job.attempts + 1)
            if error is not None:
                raise error  # procrastinate's retry strategy decides, as ours did

        return run

    async def _recover(self, app: procrastinate.App) -> int:
        stalled = list(
            await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=self.stale_after)
        )
        for job in stalled:
            log.warning("job %s (%s): its worker stopped; queued again", job.id, job.task_name)
            await app.job_manager.retry_job(job)
        return len(stalled)

    async def _work(self, burst: bool, stop: threading.Event) -> int:
        app = self._app()
        self.ran = 0
        options: dict[str, Any] = {
            "install_signal_handlers": False,
            "delete_jobs": "successful",  # our jobs row keeps the record
            "fetch_job_polling_interval": self.poll,
            "stalled_worker_timeout": self.stale_after,
            "update_heartbeat_interval": max(self.stale_after / 4, 0.5),
        }
        async with app.open_async():
            await self._recover(app)
            if burst:
                await app.run_worker_async(wait=False, listen_notify=False, **options)
                return self.ran
            worker = asyncio.create_task(app.run_worker_async(wait=True, **options))
            waited, step = 0.0, min(self.poll, 0.2)  # a server shutting down waits little
            while not stop.is_set() and not worker.done():
                await asyncio.sleep(step)
                waited += step
                if waited >= RECOVERY_EVERY:
                    waited = 0.0
                    with contextlib.suppress(Exception):  # the database is down: next time
                        await self._recover(app)
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        return self.ran

    def work(self, *, burst: bool = False, stop: threading.Event | None = None) -> int:
        """Run due jobs until none is due (`burst`) or until `stop` is set."""
        return asyncio.run(self._work(burst, stop or threading.Event()))

    def recover_stalled(self) -> int:
        """Queue again the jobs of workers whose heartbeat stopped; returns how many."""

        async def once() -> int:
            app = self._app()
            async with app.open_async():
                return await self._recover(app)

        return asyncio.run(once())

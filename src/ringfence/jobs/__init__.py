"""Background jobs on a durable queue in the database: one task interface on both backends.

Declare a task in your area's `tasks.py` (its name is `area.what`; add the area to
`registry.TASK_AREAS` if it is new)::

    from ringfence.jobs import JobContext, task

    @task("gates.run", queue="gates", retries=3, backoff=5)
    def run_gates(ctx: JobContext, release_id: int) -> None:
        release = ...  # open sessions with ctx.services.sessions
        ctx.progress(0.5, "safety probes")  # shown on /admin/jobs and by `_progress.html`

Enqueue it in the transaction of the decision that asks for it (rolled back: no job;
committed: the job cannot be lost)::

    from ringfence import jobs

    jobs.enqueue(session, "gates.run", subject=f"release:{release.id}", release_id=release.id)

Show its progress on a page: `jobs.latest_job(session, "gates.run", f"release:{release.id}")`
and `{% include "jobs/_progress.html" %}` with `job` in the context. A task is retried
`retries` times, waiting `backoff ** n` seconds before retry n, then marked failed with its
error (`ringfence_job_failures_total{job="gates.run"}`); admins retry it at /admin/jobs.
Periodic tasks take `every=lambda settings: seconds` and no arguments.

Tasks must be idempotent: a job whose worker died mid-run runs again. On SQLite the `jobs`
table is the queue (`table_queue`, where the module says why procrastinate cannot be used);
on PostgreSQL procrastinate runs them (`pg_queue`). `ringfence.wiring` picks the backend.
"""

from __future__ import annotations

from ringfence.jobs.registry import JobContext, task
from ringfence.jobs.services import enqueue, latest_job, recent_jobs

__all__ = ["JobContext", "enqueue", "latest_job", "recent_jobs", "task"]

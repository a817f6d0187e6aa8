"""Enqueueing, running and reading jobs: the parts both backends share.

`enqueue` writes the job's row in the caller's transaction and hands it to the backend's
dispatch in the same transaction (nothing on SQLite, procrastinate's defer function on
PostgreSQL), so the job exists exactly when the decision that asked for it was committed.
`run_job` is what a worker of either backend calls once it holds a job: it runs the task,
records progress, success or the error, and decides retry (with backoff) or failure.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import transaction, utcnow
from ringfence.errors import Conflict, NotFound
from ringfence.jobs import registry
from ringfence.jobs.models import Job
from ringfence.operations import metrics

if TYPE_CHECKING:
    from ringfence.wiring import Services

log = logging.getLogger("ringfence.jobs")


def enqueue(session: Session, name: str, *, subject: str = "", **kwargs: Any) -> Job:
    """Queue task `name` with `kwargs` in the caller's transaction; it runs once that commits.

    `subject` names what the job is about (e.g. "release:3"), for `latest_job`. The keyword
    arguments are stored as JSON: give ids and plain values, never ORM objects.
    """
    return _enqueue(session, registry.get_task(name), subject, kwargs, dedupe_key=None)


def _enqueue(
    session: Session,
    task: registry.Task,
    subject: str,
    kwargs: dict[str, Any],
    *,
    dedupe_key: str | None,
) -> Job:
    job = Job(
        task=task.name,
        queue=task.queue,
        subject=subject[:200],
        dedupe_key=dedupe_key,
        args=kwargs,
        state="queued",
        attempts=0,
        max_attempts=task.max_attempts,
        scheduled_at=utcnow(),
        progress=0.0,
        message="",
    )
    session.add(job)
    session.flush()
    dispatch(session, job)
    return job


def dispatch(session: Session, job: Job) -> None:
    """Tell the workers of this database about `job`, in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        from ringfence.jobs import pg_queue

        pg_queue.defer(session, job)
    # SQLite: the row is the queue; a worker claims it from the table.


def run_job(services: Services, job_id: int, attempt: int) -> BaseException | None:
    """Run the job's task as run number `attempt`; returns the error it raised, if any.

    The job's row says what happened: succeeded; queued again after `backoff ** attempt`
    seconds; or failed with its error once its runs are spent (counted in
    `ringfence_job_failures_total{job}`).
    """
    now = utcnow()
    with transaction(services.sessions) as session:
        job = session.get(Job, job_id)
        if job is None or job.state in ("succeeded", "failed"):
            return None  # retried by hand meanwhile, or a duplicate dispatch: nothing to do
        job.state, job.attempts = "running", attempt
        job.started_at = job.heartbeat_at = now
        name, args, max_attempts = job.task, dict(job.args or {}), job.max_attempts
    task = registry.load_tasks().get(name)
    if task is None:
        _finish(services, job_id, "failed", f"no task {name!r} in this version of ringfence")
        return None
    if attempt > max_attempts:
        # The worker running the last attempt died (a stale claim): do not run it once more.
        _finish(services, job_id, "failed", f"its worker stopped during run {attempt - 1}")
        metrics.JOB_FAILURES.labels(name).inc()
        return None
    ctx = registry.JobContext(
        services=services,
        job_id=job_id,
        attempt=attempt,
        final_attempt=attempt >= max_attempts,
        progress=lambda fraction, message="": set_progress(services, job_id, fraction, message),
    )
    try:
        registry.call(task, ctx, args)
    except Exception as exc:  # a task's failure is recorded, never a worker's end
        error = f"{type(exc).__name__}: {exc}"
        log.warning("job %s (%s) run %s failed: %s", job_id, name, attempt, error)
        if ctx.final_attempt:
            _finish(services, job_id, "failed", error)
            metrics.JOB_FAILURES.labels(name).inc()
        else:
            retry_at = utcnow() + timedelta(seconds=task.delay(attempt))
            _update(services, job_id, state="queued", error=error[:1000], scheduled_at=retry_at)
        return exc
    _finish(services, job_id, "succeeded", None)
    return None


def _finish(services: Services, job_id: int, state: str, error: str | None) -> None:
    values: dict[str, Any] = {"state": state, "finished_at": utcnow()}
    if state == "succeeded":
        values.update(progress=1.0, error=None)
    else:
        values["error"] = (error or "")[:1000]
    _update(services, job_id, **values)


def _update(services: Services, job_id: int, **values: Any) -> None:
    with transaction(services.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def set_progress(services: Services, job_id: int, fraction: float, message: str = "") -> None:
    """Record how far a running job is (and that its worker is alive)."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    _update(services, job_id, progress=fraction, message=message[:200], heartbeat_at=utcnow())


def latest_job(session: Session, task: str, subject: str) -> Job | None:
    """The newest job of `task` about `subject` (a page shows its progress), or None."""
    return session.scalars(
        select(Job).where(Job.task == task, Job.subject == subject).order_by(Job.id.desc()).limit(1)
    ).first()


def recent_jobs(session: Session, *, state: str = "", limit: int = 100) -> list[Job]:
    """The newest jobs, in one state when `state` is given."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


def get_job(session: Session, job_id: int) -> Job:
    """A job by id, or NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", hint="see /admin/jobs")
    return job


def retry_failed(session: Session, job: Job, *, actor: str, ip: str | None = None) -> Job:
    """Queue a failed job again with fresh attempts (an admin's decision, audited)."""
    if job.state != "failed":
        raise Conflict(f"job {job.id} is {job.state}: only a failed job is retried")
    error = job.error
    job.state, job.attempts, job.scheduled_at = "queued", 0, utcnow()
    job.finished_at, job.progress, job.message = None, 0.0, ""
    session.flush()
    dispatch(session, job)
    record(
        session,
        EventTag.Jobs.JobRetried,
        actor=actor,
        subject=f"job:{job.id}",
        ip=ip,
        payload={"task": job.task, "subject": job.subject, "last_error": error},
    )
    return job


def schedule_periodic(session_factory: Any, settings: Any, *, since: datetime) -> int:
    """Enqueue each periodic task once per interval slot begun after `since`; returns how many.

    Every worker calls this; the slot's unique `dedupe_key` lets exactly one of them win.
    """
    now = utcnow()
    queued = 0
    for task in registry.periodic_tasks():
        assert task.every is not None
        interval = max(float(task.every(settings)), 1.0)
        slot = int(now.timestamp() // interval)
        if slot * interval < since.timestamp():
            continue  # the slot began before this worker: it was another's, or none's
        key = f"{task.name}@{slot}"
        with session_factory() as session:
            if session.scalar(select(Job.id).where(Job.dedupe_key == key)) is not None:
                continue
            try:
                _enqueue(session, task, "", {}, dedupe_key=key)
                session.commit()
                queued += 1
            except IntegrityError:
                session.rollback()  # another worker enqueued this slot first
    return queued


def report_depths(session: Session) -> dict[str, int]:
    """Set `ringfence_job_queue_depth{queue}` from the queued jobs; returns the depths."""
    depths = {t.queue: 0 for t in registry.load_tasks().values()}
    rows = session.execute(
        select(Job.queue, func.count(Job.id)).where(Job.state == "queued").group_by(Job.queue)
    )
    for queue, count in rows:
        depths[queue] = int(count)
    for queue, count in depths.items():
        metrics.JOB_QUEUE_DEPTH.labels(queue).set(count)
    return depths

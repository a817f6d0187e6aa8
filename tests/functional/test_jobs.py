"""The durable job queue on SQLite (the jobs table) and PostgreSQL (procrastinate).

Each test runs on both: enqueueing is transactional, failures are retried with backoff then
recorded, a dead worker's job runs again, two workers never share a job, an approval's
manifest is computed by a worker, and /admin/jobs shows progress to the lab.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from ringfence import jobs
from ringfence.access import requests
from ringfence.access.models import AccessRequest
from ringfence.accounts.services import start_session
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.distribution import services as dist
from ringfence.jobs import JobContext, task
from ringfence.jobs.models import Job
from ringfence.jobs.services import set_progress
from ringfence.jobs.worker import Worker
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import CliRunner, write_tiny_model
from tests.fixtures_access import make_user
from tests.unit.distribution.world import add_person, publish

RAN: list[int] = []
_LOCK = threading.Lock()


@task("tests.record", queue="tests", retries=1)
def record_run(ctx: JobContext, n: int) -> None:
    """Remembers which job ran (two workers must never both run one)."""
    with _LOCK:
        RAN.append(ctx.job_id)


@task("tests.fails", queue="tests", retries=2, backoff=3)
def always_fails(ctx: JobContext) -> None:
    """Fails every time."""
    ctx.progress(0.25, "about to fail")
    raise RuntimeError("the blob store is gone")


def _jobs(services: Services) -> list[Job]:
    with services.sessions() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def _job(services: Services, job_id: int) -> Job:
    with services.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _dispatched(services: Services) -> int:
    """Jobs procrastinate holds (PostgreSQL); the jobs table's on SQLite."""
    with services.sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            return int(session.scalar(text("SELECT count(*) FROM procrastinate_jobs")) or 0)
        return int(session.scalar(select(func.count(Job.id))) or 0)


def _time_travel(services: Services) -> None:
    """Make every backoff elapse now (rather than waiting for it)."""
    with transaction(services.sessions) as session:
        session.execute(update(Job).where(Job.state == "queued").values(scheduled_at=utcnow()))
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("UPDATE procrastinate_jobs SET scheduled_at = NULL"))


def _kill_mid_run(services: Services, job_id: int) -> None:
    """Leave the job as a worker that died while running it would: claimed, heartbeat stale."""
    old = utcnow() - timedelta(hours=1)
    with transaction(services.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state="running", attempts=1, heartbeat_at=old, started_at=old)
        )
        if session.get_bind().dialect.name == "postgresql":
            dead = session.scalar(
                text(
                    "INSERT INTO procrastinate_workers (last_heartbeat) "
                    "VALUES (now() - interval '1 hour') RETURNING id"
                )
            )
            session.execute(
                text("UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w"),
                {"w": dead},
            )


def test_a_rolled_back_decision_enqueues_nothing(services: Services) -> None:
    session = services.sessions()
    jobs.enqueue(session, "tests.record", n=1)
    session.rollback()
    session.close()
    assert _jobs(services) == [] and _dispatched(services) == 0
    with transaction(services.sessions) as session:
        jobs.enqueue(session, "tests.record", n=2)
    assert [j.state for j in _jobs(services)] == ["queued"] and _dispatched(services) == 1


def test_a_failing_job_is_retried_with_backoff_then_failed_and_counted(
    services: Services,
) -> None:
    failures = REGISTRY.get_sample_value("ringfence_job_failures_total", {"job": "tests.fails"})
    with transaction(services.sessions) as session:
        job_id = jobs.enqueue(session, "tests.fails").id
    waits = []
    for attempt in (1, 2):
        before = utcnow()
        assert services.jobs.work(burst=True) == 1
        job = _job(services, job_id)
        assert (job.state, job.attempts) == ("queued", attempt)
        assert job.error == "RuntimeError: the blob store is gone"
        waits.append(job.scheduled_at - before)
        assert services.jobs.work(burst=True) == 0  # not due before its backoff
        _time_travel(services)
    # backoff ** attempt: 3 s, then 9 s (give or take the run's own time)
    assert timedelta(seconds=3) <= waits[0] < timedelta(seconds=9) <= waits[1]
    assert services.jobs.work(burst=True) == 1
    job = _job(services, job_id)
    assert (job.state, job.attempts, job.max_attempts) == ("failed", 3, 3)
    assert job.error == "RuntimeError: the blob store is gone" and job.finished_at is not None
    after = REGISTRY.get_sample_value("ringfence_job_failures_total", {"job": "tests.fails"})
    assert (after or 0) - (failures or 0) == 1
    _time_travel(services)
    assert services.jobs.work(burst=True) == 0  # failed for good


def test_a_job_whose_worker_died_runs_again(services: Services) -> None:
    with transaction(services.sessions) as session:
        job_id = jobs.enqueue(session, "tests.record", n=3).id
    _kill_mid_run(services, job_id)
    RAN.clear()
    assert services.jobs.work(burst=True) == 1
    job = _job(services, job_id)
    assert (job.state, job.attempts) == ("succeeded", 2) and [job_id] == RAN


def test_two_workers_never_run_the_same_job(services: Services) -> None:
    with transaction(services.sessions) as session:
        ids = [jobs.enqueue(session, "tests.record", n=n).id for n in range(24)]
    RAN.clear()
    others = [build(Settings(home=services.settings.home)) for _ in range(2)]  # own engines
    threads = [threading.Thread(target=o.jobs.work, kwargs={"burst": True}) for o in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(RAN) == ids  # each job once, none twice
    assert {j.state for j in _jobs(services)} == {"succeeded"}


def _approve(session: Session, user_id: int) -> int:
    release = catalogue.get_release(session, "tiny@1.0")
    req = AccessRequest(user_id=user_id, release_id=release.id, answers={})
    session.add(req)
    session.flush()
    requests.decide(session, req, approve=True, reviewer=None, actor="cli")
    return release.id


def test_an_approval_queues_its_manifest_and_the_running_worker_computes_it(
    services: Services, tmp_path: Path
) -> None:
    publish(services, write_tiny_model(tmp_path / "tiny"))
    user_id, _ = add_person(services, "ada@lab.example")
    session = services.sessions()
    _approve(session, user_id)
    session.rollback()  # the approval did not happen: neither did its job
    session.close()
    assert _jobs(services) == [] and _dispatched(services) == 0
    with transaction(services.sessions) as session:
        release_id = _approve(session, user_id)
    subject = f"release:{release_id}:user:{user_id}"
    worker = Worker(services, tick_every=0.1)  # what `ringfence serve` and `worker` run
    worker.start()
    try:
        for _ in range(1200):  # bounded: the tiny model's manifest takes well under a second
            with services.sessions() as session:
                job = jobs.latest_job(session, "distribution.manifest", subject)
                if job is not None and job.state in ("succeeded", "failed"):
                    break
            threading.Event().wait(0.05)
    finally:
        worker.stop()
    assert job is not None and job.state == "succeeded", job and job.error
    with services.sessions() as session:
        row = dist.manifest_row(session, release_id, user_id)
        assert row is not None and row.state == "ready" and row.bundle


def _admin_client(services: Services, role: str) -> tuple[TestClient, str, str]:
    with transaction(services.sessions) as session:
        user = make_user(session, f"{role}@lab.example", role=role, secrets=services.secrets)
        cookie = start_session(session, user, ip=None, user_agent=None)
    csrf = hmac.new(
        services.secrets.derive("web:csrf"), cookie.encode(), hashlib.sha256
    ).hexdigest()
    # Not entered as a context: no lifespan, so no worker runs the jobs this test looks at.
    return TestClient(create_app(services), follow_redirects=False), cookie, csrf


def test_the_jobs_page_shows_progress_and_an_admin_retries_a_failed_job(
    services: Services,
) -> None:
    with transaction(services.sessions) as session:
        running = jobs.enqueue(session, "tests.record", subject="release:9", n=4).id
        failed = jobs.enqueue(session, "tests.record", n=5).id
    set_progress(services, running, 0.5, "halfway through the shards")
    with transaction(services.sessions) as session:
        session.execute(update(Job).where(Job.id == failed).values(state="failed", error="boom"))
    client, cookie, csrf = _admin_client(services, "staff")
    page = client.get("/admin/jobs", headers={"Cookie": f"rf_session={cookie}"})
    assert page.status_code == 200
    assert "halfway through the shards" in page.text and "50%" in page.text
    assert "boom" in page.text and "Retry</button>" not in page.text  # staff read only
    refused = client.post(
        f"/admin/jobs/{failed}/retry",
        headers={"Cookie": f"rf_session={cookie}", "X-CSRF-Token": csrf},
    )
    assert refused.status_code == 403
    client, cookie, csrf = _admin_client(services, "admin")
    page = client.get("/admin/jobs", headers={"Cookie": f"rf_session={cookie}"})
    assert "Retry</button>" in page.text
    done = client.post(
        f"/admin/jobs/{failed}/retry",
        headers={"Cookie": f"rf_session={cookie}", "X-CSRF-Token": csrf},
    )
    assert done.status_code == 303
    assert (_job(services, failed).state, _job(services, failed).attempts) == ("queued", 0)
    again = client.post(
        f"/admin/jobs/{failed}/retry",
        headers={"Cookie": f"rf_session={cookie}", "X-CSRF-Token": csrf},
    )
    assert again.status_code == 409  # only a failed job is retried
    RAN.clear()
    services.jobs.work(burst=True)
    assert sorted(RAN) == [running, failed]  # each once, the retried one included


def test_ringfence_worker_runs_the_due_jobs_and_the_schedule(
    services: Services, cli: CliRunner
) -> None:
    with transaction(services.sessions) as session:
        job_id = jobs.enqueue(session, "tests.record", n=6).id
    RAN.clear()
    done = cli("worker", "--burst", "--json")
    assert done.code == 0, done.err
    assert job_id in RAN and _job(services, job_id).state == "succeeded"
    with services.sessions() as session:  # a one-off run also enqueues the periodic expiry
        expired = jobs.latest_job(session, "access.expire", "")
        assert expired is not None and expired.state == "succeeded"


def test_the_migration_brings_procrastinates_schema_and_takes_it_away(
    services: Services, backend: str
) -> None:
    from alembic import command
    from alembic.config import Config

    import ringfence.db

    def objects() -> tuple[int, int]:
        with services.engine.connect() as conn:
            if backend == "sqlite":
                jobs_table = conn.scalar(
                    text("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'")
                )
                return int(jobs_table or 0), 0
            return (
                int(
                    conn.scalar(text("SELECT count(*) FROM pg_tables WHERE tablename = 'jobs'"))
                    or 0
                ),
                int(
                    conn.scalar(
                        text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'")
                    )
                    or 0
                ),
            )

    tables, routines = objects()
    assert tables == 1 and (routines > 0) == (backend == "postgresql")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(ringfence.db.__file__).parent / "migrations"))
    with services.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    assert objects() == (0, 0)
    ringfence.db.migrate(services.engine)
    assert objects() == (tables, routines)

"""The durable job queue: what enqueueing adds to a decision's commit, and workers' throughput.

On the SQLite default (the jobs table) and on PostgreSQL (procrastinate, when
RINGFENCE_TEST_DATABASE_URL names a server): N one-row commits that enqueue a no-op job
against N one-row commits that queue an outbox mail (the cost of any decision's row), and
N no-op jobs run by two workers at once against one worker.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import best_of, ratio_row

from ringfence import jobs
from ringfence.db import transaction
from ringfence.jobs import JobContext, task
from ringfence.mail import services as mail
from ringfence.mail.messages import Message
from ringfence.settings import Settings
from ringfence.wiring import Services, build

TITLE = "Jobs: enqueueing in the decision's transaction, and workers"
SECTION = "jobs"
N = 300
RUN_N = 150
NOTE = Message(kind="bench", subject="bench", body="a decision's mail")


@task("bench.noop", queue="bench", retries=0)
def noop(ctx: JobContext, n: int) -> None:
    """Nothing: the queue's own cost."""


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _enqueue_vs_outbox(services: Services, label: str) -> dict[str, Any]:
    def outbox() -> None:
        for n in range(N):
            with transaction(services.sessions) as session:
                mail.queue(session, f"r{n}@bench.example", NOTE)

    def enqueue() -> None:
        for n in range(N):
            with transaction(services.sessions) as session:
                jobs.enqueue(session, "bench.noop", n=n)

    enqueue()  # warm: the task registry is imported, statements are cached
    base, value = best_of(outbox), best_of(enqueue)
    return ratio_row(
        SECTION,
        f"{label}: a commit that enqueues a job",
        value / N * 1000,
        "ms",
        "a commit that queues an outbox mail",
        base / N * 1000,
        higher_is_better=False,
        note=f"{N} one-row transactions each, best of 3",
    )


def _workers(home: Path, url: str | None, label: str) -> dict[str, Any]:
    def run(count: int, jobs_n: int = RUN_N) -> float:
        services = build(Settings(home=home, database_url=url))
        with transaction(services.sessions) as session:
            for n in range(jobs_n):
                jobs.enqueue(session, "bench.noop", n=n)
        others = [build(Settings(home=home, database_url=url)) for _ in range(count)]
        threads = [threading.Thread(target=o.jobs.work, kwargs={"burst": True}) for o in others]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return jobs_n / (time.perf_counter() - started)

    run(1, 20)  # warm: the ORM's and SQLAlchemy's statement caches
    one = max(run(1), run(1))
    two = max(run(2), run(2))
    return ratio_row(
        SECTION,
        f"{label}: no-op jobs run by two workers at once",
        two,
        "jobs/s",
        "one worker",
        one,
        higher_is_better=True,
        note=f"{RUN_N} jobs, best of 2; each worker its own engine (as processes have)",
    )


def run() -> list[dict[str, Any]]:
    """Rows for SQLite, then PostgreSQL when a server is named."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        services = build(Settings(home=home))
        services.prepare()
        rows.append(_enqueue_vs_outbox(services, "SQLite (jobs table)"))
        rows.append(_workers(home, None, "SQLite (jobs table)"))
        admin = os.environ.get("RINGFENCE_TEST_DATABASE_URL", "")
        if admin:
            import psycopg

            name = f"rf_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
            base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            url = f"{base}/{name}"
            try:
                pg = build(Settings(home=Path(tmp) / "pg", database_url=url))
                pg.prepare()
                rows.append(_enqueue_vs_outbox(pg, "PostgreSQL (procrastinate)"))
                rows.append(_workers(Path(tmp) / "pg", url, "PostgreSQL (procrastinate)"))
                pg.engine.dispose()
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    return rows

"""The task registry and the backends' contract."""

from __future__ import annotations

import pytest

from ringfence.errors import InvalidInput
from ringfence.jobs import registry
from ringfence.jobs.interfaces import JobQueue
from ringfence.jobs.pg_queue import ProcrastinateQueue, conninfo
from ringfence.jobs.table_queue import TableQueue
from ringfence.wiring import Services


def test_both_backends_implement_the_job_queue(services: Services) -> None:
    queues: list[JobQueue] = [TableQueue(services), ProcrastinateQueue(services)]
    for queue in queues:
        assert callable(queue.work) and callable(queue.recover_stalled)
    assert isinstance(services.jobs, TableQueue)  # the SQLite default


def test_the_areas_tasks_are_registered_with_their_schedules() -> None:
    tasks = registry.load_tasks()
    assert tasks["distribution.manifest"].queue == "manifests"
    periodic = {t.name for t in registry.periodic_tasks()}
    assert {"access.expire", "downstream.schedule", "webhooks.deliver"} <= periodic
    with pytest.raises(InvalidInput, match=r"no background task 'distribution\.manifets'"):
        registry.get_task("distribution.manifets")


def test_backoff_grows_exponentially_like_procrastinates_exponential_wait() -> None:
    flaky = registry.Task("t", lambda ctx: None, "q", retries=3, backoff=5)
    assert [flaky.delay(n) for n in (1, 2, 3)] == [5, 25, 125]
    assert flaky.max_attempts == 4
    assert registry.Task("u", lambda ctx: None, "q", retries=1, backoff=0).delay(1) == 0


def test_the_worker_connects_with_the_libpq_form_of_the_url() -> None:
    url = "postgresql+psycopg://ringfence:s3cret@db.lab:5432/ringfence"
    assert conninfo(url) == "postgresql://ringfence:s3cret@db.lab:5432/ringfence"

"""Expiry: grants past their end and pending requests past their lifetime, each exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence import jobs
from ringfence.access import expiry, grants, requests, tasks
from ringfence.access.models import AccessRequest, Grant
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.jobs import registry
from ringfence.jobs.services import schedule_periodic
from ringfence.mail.models import Mail
from ringfence.wiring import Services
from tests.fixtures_access import make_release, make_user

ANSWERS = {"affiliation": "Uni", "country": "FR", "intended_use": "Research"}
ANSWERS |= {"no_redistribution": "on"}


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as s:
        yield s
        s.commit()


def _events(session: Session, tag: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag)))


def test_a_pending_request_expires_after_its_lifetime_mailed_and_audited(
    session: Session,
) -> None:
    release = make_release(session)
    user = make_user(session, "ada@uni.example")
    req = requests.submit_request(session, user, release, ANSWERS)
    assert req.state == "pending"
    # The clock is passed in: 29 days on nothing is due, 31 days on the request expires.
    soon = utcnow() + timedelta(days=29)
    assert expiry.expire_requests(session, lifetime_days=30, now=soon) == []
    later = utcnow() + timedelta(days=31)
    assert expiry.expire_requests(session, lifetime_days=30, now=later) == [req.id]
    session.refresh(req)
    assert (req.state, req.reason) == ("expired", "not decided within 30 days")
    (event,) = _events(session, EventTag.Access.RequestExpired)
    assert event.payload["request_id"] == req.id
    mail = session.scalars(select(Mail).where(Mail.to == user.email).order_by(Mail.id.desc()))
    assert "expired" in next(iter(mail)).subject
    # Asking again starts a fresh review.
    assert requests.submit_request(session, user, release, ANSWERS).state == "pending"


def test_an_expired_grant_is_marked_mailed_and_audited_once(session: Session) -> None:
    release = make_release(session)
    user = make_user(session, "bo@uni.example")
    grant = grants.add_grant(session, release, user, days=1, actor="t")
    later = utcnow() + timedelta(days=2)
    run = expiry.expire_due(session, request_lifetime_days=30, now=later)
    assert run.grants == [grant.id] and run.requests == []
    assert expiry.expire_due(session, request_lifetime_days=30, now=later).grants == []
    session.refresh(grant)
    assert grant.state == "expired"
    assert len(_events(session, EventTag.Access.GrantExpired)) == 1
    subjects = [m.subject for m in session.scalars(select(Mail).where(Mail.to == user.email))]
    assert subjects == [f"Your access to {release.ref} has expired"]


def test_two_processes_expiring_at_once_expire_each_request_once(services: Services) -> None:
    """Each pass is one transaction of conditional UPDATEs: the second finds nothing left."""
    with services.sessions() as session:
        release = make_release(session)
        for i in range(20):
            requests.submit_request(
                session, make_user(session, f"p{i}@uni.example"), release, ANSWERS
            )
        session.commit()
    later = utcnow() + timedelta(days=31)
    runs: list[expiry.ExpiryRun] = []

    def one_pass() -> None:
        runs.append(tasks.run_expiry(services, now=later))

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r.requests) for r in runs) == [0, 20]
    with services.sessions() as session:
        assert len(_events(session, EventTag.Access.RequestExpired)) == 20
        states = set(session.scalars(select(AccessRequest.state)))
        assert states == {"expired"}
        assert session.scalars(select(Grant)).first() is None


def test_expiry_is_a_periodic_job_that_one_worker_enqueues_per_slot(services: Services) -> None:
    with services.sessions() as session:
        release = make_release(session)
        grant = grants.add_grant(session, release, make_user(session, "w@uni.example"), actor="t")
        grant.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
        grant_id = grant.id
    epoch = datetime.fromtimestamp(0, UTC)
    periodic = len(registry.periodic_tasks())  # expiry (and whatever areas add)
    assert schedule_periodic(services.sessions, services.settings, since=epoch) == periodic
    assert schedule_periodic(services.sessions, services.settings, since=epoch) == 0  # slot taken
    # a worker started during this slot leaves it to the next one (the old timer's first wait)
    assert schedule_periodic(services.sessions, services.settings, since=utcnow()) == 0
    services.jobs.work(burst=True)
    with services.sessions() as session:
        assert session.get(Grant, grant_id).state == "expired"  # type: ignore[union-attr]
        done = jobs.latest_job(session, tasks.EXPIRY_TASK, "")
        assert done is not None and done.state == "succeeded"

"""Quotas counted from the call log: each limit refuses with its own reason and wait."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from ringfence.access import grants
from ringfence.access.models import Grant
from ringfence.db import utcnow
from ringfence.errors import InvalidInput
from ringfence.hosted.quotas import QuotaExceeded, admit, check_max_tokens, set_quota, usage
from ringfence.wiring import Services
from tests.fixtures_access import make_release, make_user


@pytest.fixture
def grant(services: Services) -> Iterator[tuple[Session, Grant]]:
    with services.sessions() as session:
        user = make_user(session, "partner@uni.example")
        release = make_release(session)
        grant = grants.issue_grant(
            session, user, release, via="direct", granted_by="test", mode="hosted"
        )
        yield session, grant
        session.rollback()


def _finish(call: object, tokens: int) -> None:
    call.state = "done"  # type: ignore[attr-defined]
    call.completion_tokens = tokens  # type: ignore[attr-defined]


def test_parallel_requests(grant: tuple[Session, Grant]) -> None:
    session, g = grant
    set_quota(session, g, parallel=2)
    first, _ = admit(session, g, endpoint="completions")
    admit(session, g, endpoint="completions")
    with pytest.raises(QuotaExceeded, match="2 parallel") as refused:
        admit(session, g, endpoint="completions")
    assert refused.value.headers["Retry-After"] == "1"
    _finish(first, 1)
    admit(session, g, endpoint="completions")  # one ended: room again


def test_a_call_left_running_by_a_dead_process_stops_counting(grant: tuple[Session, Grant]) -> None:
    session, g = grant
    set_quota(session, g, parallel=1)
    stale, _ = admit(session, g, endpoint="completions")
    stale.started_at = utcnow() - timedelta(minutes=11)
    admit(session, g, endpoint="completions")


def test_tokens_per_minute_and_per_day(grant: tuple[Session, Grant]) -> None:
    session, g = grant
    set_quota(session, g, tokens_per_minute=100, tokens_per_day=150)
    call, used = admit(session, g, endpoint="completions")
    assert used.headers()["x-ratelimit-remaining-tokens"] == "100"
    _finish(call, 100)
    with pytest.raises(QuotaExceeded, match="100 tokens per minute") as per_minute:
        admit(session, g, endpoint="completions")
    assert 1 <= per_minute.value.retry_after <= 60
    call.started_at = utcnow() - timedelta(minutes=2)  # out of the minute, still today
    old = admit(session, g, endpoint="completions")[0]
    _finish(old, 60)
    old.started_at = utcnow() - timedelta(minutes=2)
    if usage(session, g).day_reset > 180:  # not within 3 minutes of midnight UTC
        with pytest.raises(QuotaExceeded, match="150 tokens per day") as per_day:
            admit(session, g, endpoint="completions")
        assert per_day.value.retry_after >= 60


def test_limits_are_bounded(grant: tuple[Session, Grant]) -> None:
    session, g = grant
    with pytest.raises(InvalidInput, match="between 1 and"):
        set_quota(session, g, requests_per_minute=0)
    with pytest.raises(InvalidInput, match="unknown quota"):
        set_quota(session, g, wishes=3)
    quota = set_quota(session, g, max_tokens=8)
    with pytest.raises(InvalidInput, match="at most 8 tokens"):
        check_max_tokens(quota, 9)

"""The sign-in limiter keeps its counts in the database, so several workers share them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringfence.accounts.ratelimit import LoginLimiter
from ringfence.db import transaction, utcnow
from ringfence.errors import RateLimited
from ringfence.settings import Settings
from ringfence.wiring import Services, build


def test_failures_counted_by_one_process_stop_the_next_attempt_in_another(
    services: Services,
) -> None:
    # A second Services on the same data dir is what a second worker process builds: its own
    # engine, its own limiter object, nothing shared but the database.
    other = build(Settings(home=services.settings.home))
    first, second = LoginLimiter(per_account=3), LoginLimiter(per_account=3)
    for _ in range(3):
        with transaction(services.sessions) as session:
            first.check(session, "9.9.9.9", "bob@lab.example")
            first.failed(session, "9.9.9.9", "Bob@Lab.example")
    with transaction(other.sessions) as session, pytest.raises(RateLimited, match="too many"):
        second.check(session, "9.9.9.9", "bob@lab.example")
    with transaction(other.sessions) as session:
        second.check(session, "8.8.8.8", "bob@lab.example")  # another client is not locked out
        second.succeeded(session, "9.9.9.9", "bob@lab.example")
    with transaction(services.sessions) as session:
        first.check(session, "9.9.9.9", "bob@lab.example")


def test_the_per_ip_limit_spans_accounts_and_failures_age_out(services: Services) -> None:
    now = [utcnow()]
    limiter = LoginLimiter(per_account=10, per_ip=4, window_s=60, clock=lambda: now[0])
    with transaction(services.sessions) as session:
        for n in range(4):
            limiter.failed(session, "7.7.7.7", f"user{n}@lab.example")
        with pytest.raises(RateLimited, match="too many"):
            limiter.check(session, "7.7.7.7", "someone-else@lab.example")
        now[0] += timedelta(seconds=61)
        limiter.check(session, "7.7.7.7", "someone-else@lab.example")

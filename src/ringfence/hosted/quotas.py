"""Quotas of hosted grants, counted from the call log so that they hold across processes.

A call is admitted in one transaction that locks the grant's quota row (PostgreSQL:
`SELECT ... FOR UPDATE`; SQLite serialises writers anyway), counts what the grant used in
the last minute and today, and inserts the call as `running`: two server processes cannot
both admit the last allowed request. Token limits refuse once used up; the call that
crosses the line still runs (its length is known only at its end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ringfence.access.models import Grant
from ringfence.db import utcnow
from ringfence.errors import InvalidInput, RateLimited
from ringfence.hosted.models import HostedCall, HostedQuota

#: a call still `running` after this long is taken for dead (its process crashed)
STALE = timedelta(minutes=10)
#: the bounds an admin may set
LIMITS = {
    "requests_per_minute": 100_000,
    "tokens_per_minute": 10_000_000,
    "tokens_per_day": 1_000_000_000,
    "parallel": 1_000,
    "max_tokens": 100_000,
}


class QuotaExceeded(RateLimited):
    """A hosted grant's quota is used up for now; `retry_after` says for how long."""

    def __init__(self, message: str, *, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(message, hint=f"retry in {retry_after} s")
        self.retry_after = retry_after
        self.headers = {**headers, "Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Usage:
    """What a grant used, and its limits."""

    quota: HostedQuota
    requests_minute: int
    tokens_minute: int
    tokens_today: int
    running: int
    #: when the oldest call of the last minute leaves the window
    minute_reset: float
    day_reset: float

    def headers(self) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for this usage."""
        q = self.quota
        tokens_left = min(
            q.tokens_per_minute - self.tokens_minute, q.tokens_per_day - self.tokens_today
        )
        return {
            "x-ratelimit-limit-requests": str(q.requests_per_minute),
            "x-ratelimit-remaining-requests": str(
                max(q.requests_per_minute - self.requests_minute, 0)
            ),
            "x-ratelimit-reset-requests": f"{self.minute_reset:.0f}s",
            "x-ratelimit-limit-tokens": str(q.tokens_per_minute),
            "x-ratelimit-remaining-tokens": str(max(tokens_left, 0)),
            "x-ratelimit-reset-tokens": f"{self.minute_reset:.0f}s",
            "x-ratelimit-limit-tokens-day": str(q.tokens_per_day),
            "x-ratelimit-remaining-tokens-day": str(max(q.tokens_per_day - self.tokens_today, 0)),
        }


def quota_of(session: Session, grant: Grant, *, lock: bool = False) -> HostedQuota:
    """The grant's quota row, made with the defaults on first use."""
    query = select(HostedQuota).where(HostedQuota.grant_id == grant.id)
    if lock:
        query = query.with_for_update()
    quota = session.scalars(query).first()
    if quota is None:
        quota = HostedQuota(grant_id=grant.id)
        session.add(quota)
        session.flush()
        if lock:
            quota = session.scalars(query).one()
    return quota


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def usage(session: Session, grant: Grant, *, lock: bool = False) -> Usage:
    """The grant's use in the current minute and UTC day."""
    quota = quota_of(session, grant, lock=lock)
    now = utcnow()
    minute_ago = now - timedelta(minutes=1)
    tokens = HostedCall.prompt_tokens + HostedCall.completion_tokens
    of_grant = HostedCall.grant_id == grant.id
    requests_minute, tokens_minute, oldest = session.execute(
        select(
            func.count(HostedCall.id),
            func.coalesce(func.sum(tokens), 0),
            func.min(HostedCall.started_at),
        ).where(of_grant, HostedCall.started_at > minute_ago)
    ).one()
    tokens_today = session.scalar(
        select(func.coalesce(func.sum(tokens), 0)).where(
            of_grant, HostedCall.started_at >= _day_start(now)
        )
    )
    running = session.scalar(
        select(func.count(HostedCall.id)).where(
            of_grant, HostedCall.state == "running", HostedCall.started_at > now - STALE
        )
    )
    if isinstance(oldest, datetime) and oldest.tzinfo is None:  # SQLite aggregates drop the zone
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    minute_reset = (
        max((oldest + timedelta(minutes=1) - now).total_seconds(), 0.0)
        if isinstance(oldest, datetime)
        else 0.0
    )
    day_reset = (_day_start(now) + timedelta(days=1) - now).total_seconds()
    return Usage(
        quota,
        int(requests_minute or 0),
        int(tokens_minute or 0),
        int(tokens_today or 0),
        int(running or 0),
        minute_reset,
        day_reset,
    )


def check_max_tokens(quota: HostedQuota, max_tokens: int) -> None:
    """InvalidInput when one call asks for more tokens than the grant allows."""
    if max_tokens > quota.max_tokens:
        raise InvalidInput(
            f"max_tokens: this grant allows at most {quota.max_tokens} tokens per call "
            f"(asked {max_tokens})"
        )


def admit(session: Session, grant: Grant, *, endpoint: str) -> tuple[HostedCall, Usage]:
    """Admit one call under the grant's quota (a `running` call row), or QuotaExceeded."""
    used = usage(session, grant, lock=True)
    q = used.quota
    refusal: tuple[str, float] | None = None
    if used.running >= q.parallel:
        refusal = (f"{q.parallel} parallel requests are allowed; wait for one to end", 1.0)
    elif used.requests_minute >= q.requests_per_minute:
        refusal = (f"{q.requests_per_minute} requests per minute are allowed", used.minute_reset)
    elif used.tokens_minute >= q.tokens_per_minute:
        refusal = (f"{q.tokens_per_minute} tokens per minute are allowed", used.minute_reset)
    elif used.tokens_today >= q.tokens_per_day:
        refusal = (f"{q.tokens_per_day} tokens per day are allowed", used.day_reset)
    if refusal is not None:
        message, wait = refusal
        raise QuotaExceeded(
            f"rate limit reached for this grant: {message}",
            retry_after=max(math.ceil(wait), 1),
            headers=used.headers(),
        )
    call = HostedCall(
        grant_id=grant.id,
        user_id=grant.user_id,
        release_id=grant.release_id,
        endpoint=endpoint,
        state="running",
        started_at=utcnow(),
    )
    session.add(call)
    session.flush()
    # The headers count this call too.
    after = Usage(
        q,
        used.requests_minute + 1,
        used.tokens_minute,
        used.tokens_today,
        used.running + 1,
        used.minute_reset or 60.0,
        used.day_reset,
    )
    return call, after


def set_quota(session: Session, grant: Grant, **limits: int | bool | None) -> HostedQuota:
    """Change a grant's limits (None keeps a value); InvalidInput out of bounds."""
    quota = quota_of(session, grant)
    for name, value in limits.items():
        if value is None:
            continue
        if name == "keep_text":
            quota.keep_text = bool(value)
            continue
        if name not in LIMITS:
            raise InvalidInput(f"unknown quota {name}")
        if not 1 <= int(value) <= LIMITS[name]:
            raise InvalidInput(f"{name}: give between 1 and {LIMITS[name]} (got {value})")
        setattr(quota, name, int(value))
    quota.updated_at = utcnow()
    session.flush()
    return quota

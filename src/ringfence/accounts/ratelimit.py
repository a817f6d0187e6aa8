"""Limits on sign-in attempts and account mails, in the database: every server process sees them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ringfence.accounts.models import RateLimitHit
from ringfence.db import utcnow
from ringfence.errors import RateLimited

#: `rate_limit_hits.key` is 400 characters at most
KEY_LENGTH = 400


class LoginLimiter:
    """Refuses sign-in when one IP+email pair, or one IP, failed too often in a window.

    Counting per IP+email stops guessing one account's password; counting per IP alone stops
    one client spraying many accounts. Successful sign-ins clear the pair's count. Failures are
    rows of `rate_limit_hits` written in the caller's transaction (which commits them with the
    audit event of the failure), so every server process behind a proxy sees the same counts.
    """

    def __init__(
        self,
        *,
        per_account: int = 5,
        per_ip: int = 50,
        window_s: float = 900.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.window = timedelta(seconds=window_s)
        self.clock = clock

    @staticmethod
    def _keys(ip: str, email: str) -> tuple[str, str]:
        return f"login:pair:{ip}|{email.lower()}"[:KEY_LENGTH], f"login:ip:{ip}"[:KEY_LENGTH]

    def _recent(self, session: Session, key: str, since: datetime) -> tuple[int, datetime | None]:
        count, oldest = session.execute(
            select(func.count(RateLimitHit.id), func.min(RateLimitHit.at)).where(
                RateLimitHit.key == key, RateLimitHit.at > since
            )
        ).one()
        return int(count or 0), oldest

    def check(self, session: Session, ip: str, email: str) -> None:
        """Raise RateLimited when this IP (or IP+email) is over its limit."""
        now = self.clock()
        since = now - self.window
        pair_key, ip_key = self._keys(ip, email)
        pair, pair_oldest = self._recent(session, pair_key, since)
        by_ip, ip_oldest = self._recent(session, ip_key, since)
        if pair >= self.per_account or by_ip >= self.per_ip:
            oldest = min(t for t in (pair_oldest, ip_oldest, now) if t is not None)
            wait = max(1, int((self.window - (now - oldest)).total_seconds()))
            raise RateLimited(
                "too many sign-in attempts", hint=f"wait {wait // 60 + 1} minutes and try again"
            )

    def failed(self, session: Session, ip: str, email: str) -> None:
        """Count one failed attempt (and forget this client's attempts older than the window)."""
        now = self.clock()
        keys = self._keys(ip, email)
        session.execute(
            delete(RateLimitHit).where(
                RateLimitHit.key.in_(keys), RateLimitHit.at <= now - self.window
            )
        )
        session.add_all(RateLimitHit(key=key, at=now) for key in keys)
        session.flush()

    def succeeded(self, session: Session, ip: str, email: str) -> None:
        """Forget the pair's failures after a correct password."""
        pair_key, _ = self._keys(ip, email)
        session.execute(delete(RateLimitHit).where(RateLimitHit.key == pair_key))


def hit(session: Session, key: str, *, limit: int, window: timedelta) -> bool:
    """Count one event under `key` in the database; False (nothing counted) when `limit` events
    already fall in the last `window`.

    Kept in the database, not in memory, so the limit holds across several server processes.
    Two processes racing may each let one more through: limits bound abuse, not exact counts.
    """
    now = utcnow()
    since = now - window
    session.execute(delete(RateLimitHit).where(RateLimitHit.key == key, RateLimitHit.at <= since))
    count = session.scalar(
        select(func.count(RateLimitHit.id)).where(RateLimitHit.key == key, RateLimitHit.at > since)
    )
    if (count or 0) >= limit:
        return False
    session.add(RateLimitHit(key=key[:400], at=now))
    return True

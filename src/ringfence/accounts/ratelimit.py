"""Limits: sign-in attempts (in this process's memory) and account mails (in the database)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ringfence.accounts.models import RateLimitHit
from ringfence.db import utcnow
from ringfence.errors import RateLimited


class LoginLimiter:
    """Refuses sign-in when one IP+email pair, or one IP, failed too often in a window.

    Counting per IP+email stops guessing one account's password; counting per IP alone stops
    one client spraying many accounts. Successful sign-ins clear the pair's count.
    """

    def __init__(
        self,
        *,
        per_account: int = 5,
        per_ip: int = 50,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._failures.setdefault(key, deque())
        while hits and now - hits[0] > self.window_s:
            hits.popleft()
        return hits

    def check(self, ip: str, email: str) -> None:
        """Raise RateLimited when this IP (or IP+email) is over its limit."""
        now = self.clock()
        with self._lock:
            pair = self._recent(f"{ip}|{email.lower()}", now)
            by_ip = self._recent(ip, now)
            if len(pair) >= self.per_account or len(by_ip) >= self.per_ip:
                oldest = min(pair[0] if pair else now, by_ip[0] if by_ip else now)
                wait = max(1, int(self.window_s - (now - oldest)))
                raise RateLimited(
                    "too many sign-in attempts", hint=f"wait {wait // 60 + 1} minutes and try again"
                )

    def failed(self, ip: str, email: str) -> None:
        """Count one failed attempt."""
        now = self.clock()
        with self._lock:
            self._recent(f"{ip}|{email.lower()}", now).append(now)
            self._recent(ip, now).append(now)

    def succeeded(self, ip: str, email: str) -> None:
        """Forget the pair's failures after a correct password."""
        with self._lock:
            self._failures.pop(f"{ip}|{email.lower()}", None)


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

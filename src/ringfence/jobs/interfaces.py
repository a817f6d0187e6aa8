"""The contract of a job queue backend; `ringfence.wiring` picks one from the settings."""

from __future__ import annotations

import threading
from typing import Protocol


class JobQueue(Protocol):
    """Runs queued jobs: the table queue (SQLite) or procrastinate's worker (PostgreSQL)."""

    def work(self, *, burst: bool = False, stop: threading.Event | None = None) -> int:
        """Run due jobs until none is due (`burst`) or until `stop` is set; returns how many."""
        ...

    def recover_stalled(self) -> int:
        """Queue again the jobs whose worker died mid-run; returns how many."""
        ...

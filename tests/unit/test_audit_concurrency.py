"""Concurrent writers never fork the audit chain (SQLite file and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from ringfence.audit import services as audit
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.wiring import Services, build


def _hammer(services: Services, writers: int = 8, each: int = 15) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with transaction(services.sessions) as session:
                    # A read before the event, as real decisions do, then the event.
                    session.scalars(select(AuditEvent).limit(1)).first()
                    audit.record(session, EventTag.Tracing.TraceRun, actor=f"w{n}", subject=str(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with transaction(services.sessions) as session:
        report = audit.verify(session)
    assert report.ok
    assert report.events == writers * each


def test_concurrent_writers_on_sqlite_keep_one_chain(services: Services) -> None:
    _hammer(services)


def test_concurrent_writers_on_postgresql_keep_one_chain(postgres_url: str, tmp_path: Path) -> None:
    services = build(Settings(home=tmp_path / "home", database_url=postgres_url))
    services.prepare()
    try:
        _hammer(services)
    finally:
        services.engine.dispose()

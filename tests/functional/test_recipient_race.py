"""Recipients registered at the same moment by several servers get distinct, dense indices."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from ringfence.catalogue.models import Release
from ringfence.fingerprint.models import Recipient
from ringfence.fingerprint.services import register_recipient
from ringfence.wiring import Services
from tests.fixtures_access import make_release

WRITERS = 8


def test_concurrent_registrations_take_distinct_indices(services: Services, tmp_path: Path) -> None:
    with services.sessions() as session:
        release_id = make_release(session).id
        session.commit()
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def register(n: int) -> None:
        try:
            with services.sessions() as session:
                release = session.get(Release, release_id)
                assert release is not None
                start.wait()
                # The same address twice from two writers: one recipient, not two.
                register_recipient(session, release, f"r{n % (WRITERS - 1)}@x.example", actor="t")
                session.commit()
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with services.sessions() as session:
        rows = session.execute(
            select(Recipient.index, Recipient.email).where(Recipient.release_id == release_id)
        ).all()
    assert sorted(index for index, _ in rows) == list(range(WRITERS - 1))
    assert len({email for _, email in rows}) == WRITERS - 1

"""Narrowing a release held by 10,000 grantees, against a plain UPDATE of the same rows.

Narrowing does more than the baseline on purpose: it decides who falls outside the circle
(a subquery over users and NDAs), revokes their grants and requests, queues one mail per
grantee and writes one audit event listing every grant, all in one transaction.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

TITLE = "Access: narrowing a release"
GRANTEES = 10_000
GOAL_S = 5.0


def _prepare(home: Path) -> None:
    """A data dir with one research release and GRANTEES members holding approved grants."""
    from datetime import timedelta

    from sqlalchemy import insert, select
    from tests.fixtures_access import make_release, password_hash

    from ringfence.access.models import AccessRequest, Grant
    from ringfence.accounts.models import User
    from ringfence.db import transaction, utcnow
    from ringfence.settings import Settings
    from ringfence.wiring import build

    services = build(Settings(home=home))
    services.prepare()
    now = utcnow()
    with transaction(services.sessions) as session:
        release = make_release(session, "bench", "1.0", circle="research")
        session.execute(
            insert(User),
            [
                {
                    "email": f"r{i}@uni{i % 50}.example",
                    "name": "",
                    "password_hash": password_hash(),
                    "role": "member",
                    "email_verified_at": now,
                    "is_active": True,
                    "created_at": now,
                }
                for i in range(GRANTEES)
            ],
        )
        ids = list(session.scalars(select(User.id).order_by(User.id)))
        session.execute(
            insert(AccessRequest),
            [
                {
                    "user_id": uid,
                    "release_id": release.id,
                    "state": "approved",
                    "answers": {},
                    "reason": "",
                    "via": "web",
                    "created_at": now,
                }
                for uid in ids
            ],
        )
        requests = dict(session.execute(select(AccessRequest.user_id, AccessRequest.id)).all())
        session.execute(
            insert(Grant),
            [
                {
                    "user_id": uid,
                    "release_id": release.id,
                    "state": "active",
                    "via": "request",
                    "request_id": requests[uid],
                    "granted_by": "bench",
                    "created_at": now,
                    "expires_at": now + timedelta(days=365),
                    "revoked_reason": "",
                }
                for uid in ids
            ],
        )
    services.engine.dispose()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _narrow(home: Path) -> tuple[float, int]:
    from ringfence.access.circles import set_circle
    from ringfence.catalogue.services import get_release
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    services = build(Settings(home=home))
    with transaction(services.sessions) as session:
        get_release(session, "bench@1.0")  # warm the connection and the mappers
    started = time.perf_counter()
    with transaction(services.sessions) as session:
        change = set_circle(
            session,
            get_release(session, "bench@1.0"),
            "partners",
            reason="benchmark",
            actor="bench",
        )
    elapsed = time.perf_counter() - started
    services.engine.dispose()
    return elapsed, change.revoked


def _plain_update(home: Path) -> float:
    import sqlite3

    conn = sqlite3.connect(home / "ringfence.db")
    conn.execute("SELECT count(*) FROM grants").fetchone()
    started = time.perf_counter()
    conn.execute(
        "UPDATE grants SET state = 'revoked', revoked_reason = 'benchmark', "
        "revoked_at = CURRENT_TIMESTAMP WHERE release_id = 1 AND state = 'active'"
    )
    conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def run() -> list[dict[str, Any]]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "seed"
        _prepare(seed)
        narrow, baseline, revoked = [], [], 0
        for i in range(3):
            took, revoked = _narrow(_copy(seed, Path(tmp) / f"narrow{i}"))
            narrow.append(took)
            baseline.append(_plain_update(_copy(seed, Path(tmp) / f"plain{i}")))
    value, base = min(narrow), min(baseline)
    assert revoked == GRANTEES, f"narrowing revoked {revoked} grants, expected {GRANTEES}"
    return [
        {
            "section": "access",
            "name": f"narrow research -> partners, {GRANTEES:,} grants (one transaction, SQLite)",
            "value": value,
            "unit": "s",
            "baseline": "plain UPDATE of the same grant rows",
            "baseline_value": base,
            "ratio": value / base if base else None,
            "goal": f"< {GOAL_S:.0f} s",
            "met": value < GOAL_S,
            "note": f"revokes {revoked:,} grants and their requests, queues {revoked:,} mails, "
            "one audit event; best of 3",
        }
    ]


if __name__ == "__main__":
    for row in run():
        print(row)

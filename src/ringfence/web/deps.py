"""Request dependencies: the services and one database transaction per request."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from ringfence.wiring import Services


def get_services(request: Request) -> Services:
    """The services the app was built with."""
    services: Services = request.app.state.services
    return services


def db_session(request: Request) -> Iterator[Session]:
    """A session committed when the request succeeds and rolled back when it fails.

    FastAPI runs this teardown after the response has been sent: a view that writes must
    commit itself before it returns, or the caller may hold an answer for a change that a
    crash or a database outage then loses (tests/functional/test_database_outage.py).
    """
    session = get_services(request).sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

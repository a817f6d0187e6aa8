"""Fixtures for functional tests (each area's live in a `tests/fixtures_<area>.py` module).

Every functional test runs twice: on the embedded SQLite default and on PostgreSQL. The
`backend` parameter is module-scoped (each module runs whole on one, then the other); each
test gets a fresh database through `RINGFENCE_DATABASE_URL`, which `Settings` reads whenever a
test does not name a database itself. Modules that build one world for all their tests mark
themselves `shared_database` and build it on `module_database_url`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import databases
from tests.fixtures_access import smtp_server

__all__ = ["smtp_server"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], autouse=True)
def backend(request: pytest.FixtureRequest) -> str:
    """The database every test of this module runs on."""
    if request.param == "postgresql":
        if request.node.get_closest_marker("no_database"):
            pytest.skip("this module's tests use no database")
        databases.postgres_server()  # skips, saying why, without a server
    return str(request.param)


@pytest.fixture(autouse=True)
def _database(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A fresh PostgreSQL database for this test (SQLite: the file in the test's data dir)."""
    if request.node.get_closest_marker("shared_database"):
        yield  # the module's world chose its database
        return
    if backend == "sqlite":
        monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
        yield
        return
    server = databases.postgres_server()
    url = server.create()
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", url)
    yield
    server.drop(url)


@pytest.fixture(scope="module")
def module_database_url(backend: str) -> Iterator[str | None]:
    """One database for a whole module's world: None for SQLite (the data dir's file)."""
    if backend == "sqlite":
        yield None
        return
    server = databases.postgres_server()
    url = server.create()
    yield url
    server.drop(url)

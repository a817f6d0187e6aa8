"""Real PostgreSQL databases for tests: one migrated template per run, a fresh clone per use.

`RINGFENCE_TEST_DATABASE_URL` names a server and a database to connect to for CREATE
DATABASE (`.ci/run` and `make test` set it to postgresql://root@127.0.0.1:5432/test). Without
it the PostgreSQL runs skip, saying so; with it but no server, they skip too, except under CI
(`CI` set), where an unreachable server fails the run.

Cloning a template that already carries the schema (`CREATE DATABASE ... TEMPLATE`) costs a
file copy instead of running every migration again for each test.
"""

from __future__ import annotations

import os
import uuid
from functools import cache

import pytest

ENV = "RINGFENCE_TEST_DATABASE_URL"


class PostgresServer:
    """Creates and drops databases on one PostgreSQL server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        base = admin_url.rsplit("/", 1)[0]
        self.base = base.replace("postgresql://", "postgresql+psycopg://", 1)
        self.template: str | None = None

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` on this server."""
        return f"{self.base}/{name}"

    def _migrated_template(self) -> str:
        if self.template is None:
            from ringfence.db import make_engine, migrate

            name = f"rf_template_{uuid.uuid4().hex[:10]}"
            self._execute(f'CREATE DATABASE "{name}"')
            engine = make_engine(self.url(name))
            migrate(engine)
            engine.dispose()  # a template must have no connections when it is cloned
            self.template = name
        return self.template

    def create(self, *, migrated: bool = True) -> str:
        """A fresh database (with the schema when `migrated`); returns its URL."""
        name = f"rf_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{self._migrated_template()}"' if migrated else ""
        self._execute(f'CREATE DATABASE "{name}"{template}')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database at `url` (connections still open are ended)."""
        name = url.rsplit("/", 1)[1]
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template."""
        if self.template is not None:
            self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self.template = None


@cache
def _server() -> PostgresServer | str:
    admin = os.environ.get(ENV, "")
    if not admin:
        return f"PostgreSQL runs need {ENV} (e.g. postgresql://root@127.0.0.1:5432/test)"
    import psycopg

    try:
        psycopg.connect(admin, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        return f"PostgreSQL is not reachable at {admin}: {exc}"
    return PostgresServer(admin)


def postgres_server() -> PostgresServer:
    """The test PostgreSQL server, or a skip that says why there is none."""
    server = _server()
    if isinstance(server, str):
        pytest.skip(server)
    return server


def close() -> None:
    """Drop what this run left on the server (its template)."""
    server = _server() if os.environ.get(ENV) else None
    if isinstance(server, PostgresServer):
        server.close()

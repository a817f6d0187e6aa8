"""Database engine, sessions and migrations (SQLAlchemy 2, Alembic); portable SQL only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from ringfence.datadir import private_file
from ringfence.errors import Conflict, DatabaseUnavailable, RingfenceError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every ringfence table."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use ringfence.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


#: seconds a request waits for a pooled connection before it answers 503: the admission
#: limit (ringfence.web.admission) keeps the pool from running dry, so a wait this long means
#: trouble, and a short bound turns it into a quick retryable answer rather than a hang
POOL_TIMEOUT_S = 5.0


def make_engine(url: str, *, pool_size: int = 16) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL and a busy timeout.

    `pool_size` connections stay open (the server's admission limit: one per running
    request), with half as many again in overflow for sessions still closing.
    """
    pool: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": pool_size // 2,
        "pool_timeout": POOL_TIMEOUT_S,
    }
    if url.startswith("sqlite"):
        _create_sqlite_file(url)
        database = make_url(url).database or ""
        if database in ("", ":memory:") or "mode=memory" in url:
            pool = {}  # an in-memory database lives in one connection: SQLAlchemy's own pool
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def _create_sqlite_file(url: str) -> None:
    # SQLite creates its file under the process umask, and its -wal/-shm files with the
    # file's own permissions: a database file made 0600 first keeps all three owner-only.
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        if path.parent.is_dir():
            private_file(path)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back everything on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


#: the PostgreSQL advisory lock key migrations take ("ringfenc" as a 64-bit integer)
MIGRATION_LOCK = int.from_bytes(b"ringfenc", "big") & 0x7FFF_FFFF_FFFF_FFFF


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (one process at a time on PostgreSQL).

    SQLite has no such lock: `ringfence serve --workers N` migrates in the parent, once,
    before it starts the workers, which never migrate (`ringfence.web.app.worker_app`).
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Processes starting together (server workers, a command) migrate one at a time:
            # the lock is held until this transaction ends, and the next finds nothing to do.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


#: SQLite: "UNIQUE constraint failed: users.email"; PostgreSQL: "Key (email)=(a@b.c) already exists"
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<columns>[\w., ]+)")
_POSTGRES_UNIQUE = re.compile(r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\) already exists")


def safe_url(url: str) -> str:
    """`url` with its password masked, fit for an error message or a log line."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<an unreadable database URL>"


def database_error(exc: sa_exc.SQLAlchemyError, url: str | None) -> RingfenceError | None:
    """The one-line RingfenceError a database failure stands for, or None for a bug."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0].strip()
    if isinstance(exc, sa_exc.IntegrityError):
        if found := _POSTGRES_UNIQUE.search(str(exc.orig)):
            return Conflict(
                f"a record with {found['columns']} = {found['values']} already exists",
                hint="use the existing one, or another",
            )
        if found := _SQLITE_UNIQUE.search(reason):
            names = [c.strip().partition(".") for c in found["columns"].split(",")]
            columns = " and ".join(column for _, _, column in names)
            return Conflict(
                f"{names[0][0]}: a record with the same {columns} already exists",
                hint="use the existing one, or another",
            )
        return Conflict(f"the database refused the change: {reason}")
    if isinstance(exc, sa_exc.OperationalError):
        where = f" at {safe_url(url)}" if url else ""
        return DatabaseUnavailable(
            f"cannot use the database{where}: {reason}",
            hint="check RINGFENCE_DATABASE_URL (or RINGFENCE_HOME) and that the database is up",
        )
    return None

"""Alembic environment: runs on the connection ringfence.db.migrate() hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ringfence.db import Base, make_engine
from ringfence.models import load_all
from ringfence.settings import Settings

load_all()
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(Settings().resolved_database_url)
    with engine.begin() as conn:
        _run(conn)

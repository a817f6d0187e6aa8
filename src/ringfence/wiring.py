"""The one place where settings turn into implementations; tests swap them here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ringfence.datadir import private_dir, tighten
from ringfence.db import make_engine, make_sessionmaker, migrate, utcnow
from ringfence.secrets import LocalSecretStore, SecretStore
from ringfence.settings import Settings
from ringfence.storage import BlobStore

if TYPE_CHECKING:
    from ringfence.accounts.ratelimit import LoginLimiter
    from ringfence.jobs.interfaces import JobQueue
    from ringfence.mail.services import Mailer


@dataclass
class Services:
    """Everything the CLI and the web app need, built once from settings."""

    settings: Settings
    #: what time it is for scheduled work (staged widenings, webhook retries); tests set it
    clock: Callable[[], datetime] = field(default=utcnow)

    def __post_init__(self) -> None:
        # Every table, and every area's listeners and hold providers, in every process that
        # works on the database (a narrowing from the CLI notifies as one from the web does).
        from ringfence.models import load_all

        load_all()

    @cached_property
    def engine(self) -> Engine:
        if not self.settings.database_url:
            private_dir(self.settings.home)  # the SQLite file is created 0600 in it
        return make_engine(
            self.settings.resolved_database_url, pool_size=self.settings.max_in_flight
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def blobs(self) -> BlobStore:
        # RINGFENCE_STORAGE chooses local (default) or S3 (see ringfence.storage_s3).
        from ringfence.storage_s3 import make_blob_store

        return make_blob_store(self.settings.blob_dir)

    @cached_property
    def secrets(self) -> SecretStore:
        return LocalSecretStore(self.settings.secrets_dir)

    @cached_property
    def mailer(self) -> Mailer:
        """Delivers queued mails: SMTP, or the development outbox (settings.mail_backend)."""
        from ringfence.mail.services import make_mailer

        return make_mailer(self.settings)

    @cached_property
    def login_limiter(self) -> LoginLimiter:
        """Sign-in attempt limits (counted in the database: every worker sees the same)."""
        from ringfence.accounts.ratelimit import LoginLimiter

        return LoginLimiter()

    @cached_property
    def jobs(self) -> JobQueue:
        """Runs background jobs: procrastinate on PostgreSQL, the jobs table on SQLite."""
        if self.engine.dialect.name == "postgresql":
            from ringfence.jobs.pg_queue import ProcrastinateQueue

            return ProcrastinateQueue(self)
        from ringfence.jobs.table_queue import TableQueue

        return TableQueue(self)

    def prepare(self) -> None:
        """Create the data dir owner-only (tightening an older one) and migrate the schema."""
        private_dir(self.settings.home)
        tighten(self.settings.home)
        migrate(self.engine)


def build(settings: Settings | None = None) -> Services:
    """Services for the given settings (default: from the environment)."""
    from ringfence.models import load_all

    # Every area's tables, and what areas register on loading (the gates' hold on widening).
    load_all()
    return Services(settings or Settings())

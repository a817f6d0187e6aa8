"""The one place where settings turn into implementations; tests swap them here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ringfence.db import make_engine, make_sessionmaker, migrate
from ringfence.secrets import LocalSecretStore, SecretStore
from ringfence.settings import Settings
from ringfence.storage import BlobStore, LocalBlobStore


@dataclass
class Services:
    """Everything the CLI and the web app need, built once from settings."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.resolved_database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def blobs(self) -> BlobStore:
        return LocalBlobStore(self.settings.blob_dir)

    @cached_property
    def secrets(self) -> SecretStore:
        return LocalSecretStore(self.settings.secrets_dir)

    def prepare(self) -> None:
        """Create the data dir and bring the database schema up to date."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        migrate(self.engine)


def build(settings: Settings | None = None) -> Services:
    """Services for the given settings (default: from the environment)."""
    return Services(settings or Settings())

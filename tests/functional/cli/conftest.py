"""One data dir per module for the CLI's functional tests: a lab with a published tiny release.

Commands here do not interfere when each test uses its own people and institutions, so a
module shares one data dir (publishing is the slow part) and each test gets the in-process
`cli` runner from tests/conftest.py pointed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.wiring import Services, build
from tests.conftest import TINY_CODE, TINY_CODE_ENV, write_tiny_model
from tests.fixtures_access import Inbox, make_user

REF = "tiny@1.0"
ADMIN = "admin@lab.example"


@dataclass
class Lab:
    """A module's data dir: the lab, tiny@1.0 published (in-house), an admin with two-factor."""

    home: Path
    services: Services
    model: Path
    database_url: str | None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each module here builds one lab per database (see tests/functional/conftest.py)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.shared_database)


def lab_env(home: Path, database_url: str | None) -> dict[str, str]:
    """The environment every command of a module runs with."""
    # Mail stays queued unless a test asks for a real SMTP server (the `inbox` fixture).
    env = {"RINGFENCE_HOME": str(home), "RINGFENCE_MAIL_BACKEND": "none", **TINY_CODE_ENV}
    return {**env, "RINGFENCE_DATABASE_URL": database_url} if database_url else env


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None) -> Iterator[Lab]:
    """The module's data dir (and database), built once per database."""
    from ringfence.cli import context

    root = tmp_path_factory.mktemp("cli")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RINGFENCE_DATABASE_URL", raising=False)
        for key, value in lab_env(home, module_database_url).items():
            mp.setenv(key, value)
        svc = build(Settings(home=home))
        svc.prepare()
        model = write_tiny_model(root / "tiny")
        with transaction(svc.sessions) as session:
            catalogue.init_organisation(session, "lab")
            catalogue.publish(
                session, svc.blobs, model, model="tiny", version="1.0", fingerprint=TINY_CODE
            )
            make_user(session, ADMIN, role="admin", secrets=svc.secrets)
        context.services.cache_clear()
        yield Lab(home, svc, model, module_database_url)
        context.services.cache_clear()


@pytest.fixture
def home(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The module's data dir instead of a fresh one (overrides tests/conftest.py's `home`)."""
    from ringfence.cli import context

    monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
    for key, value in lab_env(lab.home, lab.database_url).items():
        monkeypatch.setenv(key, value)
    context.services.cache_clear()
    yield lab.home
    context.services.cache_clear()


@pytest.fixture
def inbox(home: Path, smtp_server: tuple[int, Inbox], monkeypatch: pytest.MonkeyPatch) -> Inbox:
    """Commands in this test send their mail to a real SMTP server; what it received."""
    from ringfence.cli import context

    port, received = smtp_server
    monkeypatch.setenv("RINGFENCE_MAIL_BACKEND", "smtp")
    monkeypatch.setenv("RINGFENCE_SMTP_PORT", str(port))
    context.services.cache_clear()
    return received

"""The same catalogue and audit chain on PostgreSQL: the SQL stays portable."""

from __future__ import annotations

from pathlib import Path

from ringfence.audit import services as audit
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.wiring import build
from tests.conftest import TINY_CODE


def test_publish_and_audit_chain_on_postgresql(
    postgres_url: str, tmp_path: Path, tiny_model: Path
) -> None:
    services = build(Settings(home=tmp_path / "home", database_url=postgres_url))
    services.prepare()
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        catalogue.publish(
            session, services.blobs, tiny_model, model="tiny", version="1", fingerprint=TINY_CODE
        )
    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, "tiny@1")
        assert release.created_at.tzinfo is not None
        assert len(release.artifacts) == 4
        report = audit.verify(session)
        assert report.ok and report.events == 2
    services.engine.dispose()

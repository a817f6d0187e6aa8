"""schemathesis over the JSON API's OpenAPI schema and the Hub's routes: no request is a 5xx.

The Hub routes are kept out of the app's schema (huggingface_hub, not people, reads them), so
HUB_PATHS describes them here. Each operation runs as anonymous, as a member with a download
token and as an admin with an admin token. RINGFENCE_FUZZ_EXAMPLES raises the number of
examples per operation for a bench run (the suite's default keeps this file under a minute).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ringfence.access.licences import install_research_licence
from ringfence.access.models import Grant, LicenceAcceptance
from ringfence.accounts.tokens import create_token
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import build
from tests.conftest import TINY_CODE, write_tiny_model
from tests.fixtures_access import make_user

EXAMPLES = int(os.environ.get("RINGFENCE_FUZZ_EXAMPLES", "6"))
TOKENS: dict[str, str] = {}

pytestmark = pytest.mark.shared_database


def _string(name: str, where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}


_REPO = [_string("ns"), _string("name")]
_ANSWER = {"responses": {"200": {"description": "the Hub's JSON"}}}
HUB_PATHS: dict[str, Any] = {
    "/api/models/{ns}/{name}": {
        "get": {"parameters": [*_REPO, _string("blobs", "query")], **_ANSWER}
    },
    "/api/models/{ns}/{name}/revision/{revision}": {
        "get": {"parameters": [*_REPO, _string("revision"), _string("blobs", "query")], **_ANSWER}
    },
    "/api/models/{ns}/{name}/tree/{revision}": {
        "get": {"parameters": [*_REPO, _string("revision")], **_ANSWER}
    },
    "/api/models/{ns}/{name}/tree/{revision}/{path}": {
        "get": {"parameters": [*_REPO, _string("revision"), _string("path")], **_ANSWER}
    },
    "/{ns}/{name}/resolve/{revision}/{path}": {
        "get": {
            "parameters": [
                *_REPO,
                _string("revision"),
                _string("path"),
                _string("range", "header"),
            ],
            **_ANSWER,
        }
    },
}


def _schema() -> Any:
    """The app's schema plus HUB_PATHS, built at import (schemathesis parametrises from it).

    Generating the schema reads only the routes, so these services are never prepared; the
    `world` fixture gives the app services with data before the first case runs.
    """
    app = create_app(build(Settings(home=Path(tempfile.gettempdir()) / "ringfence-fuzz-schema")))
    raw = app.openapi()
    loaded = schemathesis.openapi.from_dict({**raw, "paths": {**raw["paths"], **HUB_PATHS}})
    loaded.location = "/api/v1/openapi.json"
    loaded.app = app
    return loaded


schema = _schema()


@pytest.fixture(scope="module", autouse=True)
def world(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[None]:
    """An app with a published research release, a member with a grant, and two tokens."""
    home: Path = tmp_path_factory.mktemp("fuzz")
    services = build(Settings(home=home, database_url=module_database_url))
    services.prepare()
    model = write_tiny_model(home.parent / f"{home.name}-model")
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        licence = install_research_licence(session, actor="test")
        release = catalogue.publish(
            session, services.blobs, model, model="tiny", version="1.0", fingerprint=TINY_CODE
        )
        release.circle, release.licence = "research", licence
        member = make_user(session, "member@fuzz.example")
        admin = make_user(session, "admin@fuzz.example", role="admin", secrets=services.secrets)
        session.add(
            Grant(
                user_id=member.id,
                release_id=release.id,
                granted_by="test",
                state="active",
                expires_at=utcnow() + timedelta(days=30),
            )
        )
        session.add(
            LicenceAcceptance(
                user_id=member.id,
                release_id=release.id,
                licence_id=licence.id,
                licence_ref=licence.ref,
                text_sha256=licence.sha256,
            )
        )
        TOKENS["member"] = create_token(session, member, "download", actor="test").raw
        TOKENS["admin"] = create_token(session, admin, "admin", actor="test").raw
    schema.app.state.services = services
    yield


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Any, world: None) -> None:
    """No generated request makes the server answer 5xx, whoever sends it."""
    # Each case goes out three times rather than three parametrised runs: a lazy schema
    # (`from_fixture`) cannot take pytest parameters.
    for caller in ("anonymous", "member", "admin"):
        headers = {"Authorization": f"Bearer {TOKENS[caller]}"} if caller in TOKENS else {}
        case.call_and_validate(headers=headers, checks=[schemathesis.checks.not_a_server_error])

"""What a Hub metadata call reads: a bounded handful of queries, never the tensor index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.unit.distribution.world import World, make_world, revoke


@pytest.fixture
def world(services: Services, tiny_model: Path) -> World:
    return make_world(services, tiny_model)


@pytest.fixture
def statements(services: Services) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(services.engine, "before_cursor_execute", record)
    yield seen
    event.remove(services.engine, "before_cursor_execute", record)


def test_model_info_reads_no_tensor_index_and_few_queries(
    services: Services, world: World, statements: list[str]
) -> None:
    client = TestClient(create_app(services))
    auth = {"Authorization": f"Bearer {world.token}"}
    # The first download builds the file's fingerprint plan (reading its tensors) once.
    assert client.get(f"/{world.repo_id}/resolve/1.0/model.safetensors", headers=auth).is_success
    for path in (f"/api/models/{world.repo_id}", f"/api/models/{world.repo_id}/revision/1.0"):
        statements.clear()
        r = client.get(path, headers=auth)
        assert r.status_code == 200, r.text
        assert not [s for s in statements if "FROM tensors" in s]
        # token with its holder, release with its model and files, grant, manifest: and not
        # one query per file, release or relation.
        assert len(statements) <= 5, statements
    statements.clear()
    r = client.get(f"/{world.repo_id}/resolve/1.0/model.safetensors", headers=auth)
    assert r.is_success and not [s for s in statements if "FROM tensors" in s]


def test_revocation_still_takes_effect_on_the_next_metadata_call(
    services: Services, world: World
) -> None:
    client = TestClient(create_app(services))
    auth = {"Authorization": f"Bearer {world.token}"}
    assert client.get(f"/api/models/{world.repo_id}", headers=auth).status_code == 200
    assert client.get(f"/{world.repo_id}/resolve/1.0/model.safetensors", headers=auth).is_success
    revoke(services, world.ref, world.user_id)
    r = client.get(f"/api/models/{world.repo_id}", headers=auth)
    assert (r.status_code, r.headers["x-error-code"]) == (403, "GatedRepo")
    r = client.get(f"/{world.repo_id}/resolve/1.0/model.safetensors", headers=auth)
    assert r.status_code == 403

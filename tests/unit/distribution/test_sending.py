"""Plain files leave by the file-sending path (FileResponse, or nginx's X-Accel-Redirect);
fingerprinted ones still stream, and the bytes, ETag, ranges and audit are the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.distribution.sending import accel_path
from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.unit.distribution.world import World, make_world


@pytest.fixture
def world(services: Services, tiny_model: Path) -> World:
    return make_world(services, tiny_model)


def _auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.token}"}


def _downloads(services: Services) -> list[dict[str, object]]:
    with services.sessions() as session:
        rows = session.scalars(
            select(AuditEvent.payload).where(AuditEvent.tag == EventTag.Distribution.Downloaded)
        )
        return list(rows)


def test_a_plain_file_goes_by_file_response_with_its_etag_ranges_and_audit(
    services: Services, world: World, tiny_model: Path
) -> None:
    client = TestClient(create_app(services))
    url = f"/{world.repo_id}/resolve/{world.version}/tokenizer.json"
    original = (tiny_model / "tokenizer.json").read_bytes()
    head = client.head(url, headers=_auth(world))
    whole = client.get(url, headers=_auth(world))
    assert whole.status_code == 200 and whole.content == original
    assert "x-accel-redirect" not in whole.headers and "last-modified" not in whole.headers
    assert whole.headers["etag"] == head.headers["etag"]
    assert whole.headers["content-length"] == str(len(original))
    part = client.get(url, headers={**_auth(world), "Range": "bytes=2-9"})
    assert part.status_code == 206 and part.content == original[2:10]
    assert part.headers["content-range"] == f"bytes 2-9/{len(original)}"
    # If-Range with a stale ETag: ringfence decided "the whole file", and that is what comes.
    stale = client.get(url, headers={**_auth(world), "Range": "bytes=2-9", "If-Range": '"x"'})
    assert stale.status_code == 200 and stale.content == original
    assert [(p["path"], p["bytes"]) for p in _downloads(services)] == [
        ("tokenizer.json", len(original)),
        ("tokenizer.json", 8),
        ("tokenizer.json", len(original)),
    ]


def test_with_accel_redirect_a_whole_plain_file_is_handed_to_nginx(
    services: Services, world: World
) -> None:
    services.settings.accel_redirect = "/_blobs/"
    client = TestClient(create_app(services))
    base = f"/{world.repo_id}/resolve/{world.version}"
    head = client.head(f"{base}/config.json", headers=_auth(world))
    r = client.get(f"{base}/config.json", headers=_auth(world))
    assert r.status_code == 200 and r.content == b""
    target = r.headers["x-accel-redirect"]
    assert target.startswith("/_blobs/sha256/")
    blob = services.settings.blob_dir / target.removeprefix("/_blobs/")
    assert (
        blob.read_bytes() == (Path(services.settings.home).parent / "tiny/config.json").read_bytes()
    )
    assert r.headers["etag"] == head.headers["etag"]
    assert r.headers["x-repo-commit"] == head.headers["x-repo-commit"]
    assert _downloads(services)[-1]["path"] == "config.json"
    # A range, and any fingerprinted file, stay with the app.
    part = client.get(f"{base}/config.json", headers={**_auth(world), "Range": "bytes=0-3"})
    assert part.status_code == 206 and "x-accel-redirect" not in part.headers
    weights = client.get(f"{base}/model.safetensors", headers=_auth(world))
    assert weights.status_code == 200 and "x-accel-redirect" not in weights.headers
    assert len(weights.content) == int(weights.headers["content-length"])


def test_accel_path_refuses_a_file_outside_the_blob_directory(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    assert accel_path("/_blobs/", blobs, blobs / "sha256/ab/cd/x") == "/_blobs/sha256/ab/cd/x"
    assert accel_path("/_blobs/", blobs, tmp_path / "elsewhere") is None

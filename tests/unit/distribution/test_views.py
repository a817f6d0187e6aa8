"""The download endpoints through HTTP: links, ranges, HEAD, ETags, refusals, audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from ringfence.access.circles import set_circle
from ringfence.audit.models import AuditEvent
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.distribution import links
from ringfence.distribution.models import DownloadLink
from ringfence.distribution.tasks import compute_pending
from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.unit.distribution.world import World, add_person, make_world, revoke


@pytest.fixture
def world(services: Services, tiny_model: Path) -> World:
    return make_world(services, tiny_model)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    # No `with`: the lifespan's manifest worker stays off, tests compute manifests themselves.
    yield TestClient(create_app(services))


def _auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.token}"}


def _link(client: TestClient, world: World, **body: object) -> str:
    r = client.post(
        "/api/v1/distribution/links", json={"release": world.ref, **body}, headers=_auth(world)
    )
    assert r.status_code == 200, r.text
    return str(r.json()["url"]).removeprefix(world.services.settings.base_url)


def _size(world: World, path: str) -> int:
    return (Path(world.services.settings.home).parent / "tiny" / path).stat().st_size


def test_link_serves_whole_files_and_ranges(client: TestClient, world: World) -> None:
    link = _link(client, world)
    whole = client.get(f"{link}/f/model.safetensors")
    assert whole.status_code == 200
    assert (
        int(whole.headers["content-length"])
        == len(whole.content)
        == _size(world, "model.safetensors")
    )
    part = client.get(f"{link}/f/model.safetensors", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert part.content == whole.content[100:200]
    head = client.head(f"{link}/f/model.safetensors")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    assert head.headers["etag"] == whole.headers["etag"]


def test_malformed_and_outside_ranges_get_416(client: TestClient, world: World) -> None:
    link = _link(client, world)
    for bad in ("bytes=abc", "bytes=5-1", "bytes=999999999-", "bytes=0-1,3-4"):
        r = client.get(f"{link}/f/config.json", headers={"Range": bad})
        assert r.status_code == 416, bad


def test_if_range_with_a_stale_etag_sends_the_whole_file(client: TestClient, world: World) -> None:
    link = _link(client, world)
    r = client.get(f"{link}/f/config.json", headers={"Range": "bytes=3-", "If-Range": '"stale"'})
    assert r.status_code == 200
    assert r.content.startswith(b"{")


def test_etag_is_per_recipient_and_not_the_original_hash(
    client: TestClient, world: World, services: Services
) -> None:
    other_id, other_token = add_person(services, "bob@lab.example")
    from tests.unit.distribution.world import grant

    grant(services, world.ref, other_id)
    path = f"/{world.repo_id}/resolve/1.0/model.safetensors"
    mine = client.head(path, headers=_auth(world)).headers
    theirs = client.head(path, headers={"Authorization": f"Bearer {other_token}"}).headers
    assert mine["etag"] != theirs["etag"]
    assert mine["x-repo-commit"] != theirs["x-repo-commit"]
    from tests.unit.distribution.world import release

    original = next(
        a.sha256 for a in release(services, world.ref).artifacts if a.path == "model.safetensors"
    )
    assert original not in mine["etag"]


def test_etag_becomes_the_sha256_of_the_recipient_bytes(
    client: TestClient, world: World, services: Services
) -> None:
    import hashlib

    compute_pending(services)
    r = client.get(f"/{world.repo_id}/resolve/1.0/model.safetensors", headers=_auth(world))
    assert r.headers["etag"].strip('"') == hashlib.sha256(r.content).hexdigest()


def test_forged_link_is_403_with_a_page_saying_why(client: TestClient, world: World) -> None:
    link = _link(client, world)
    forged = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    r = client.get(f"{forged}/f/config.json", headers={"Accept": "text/html"})
    assert r.status_code == 403
    assert "not valid" in r.text and "<html" in r.text


def test_expired_link_is_403(client: TestClient, world: World, services: Services) -> None:
    link = _link(client, world)
    with transaction(services.sessions) as session:
        session.execute(update(DownloadLink).values(expires_at=utcnow() - timedelta(minutes=1)))
    r = client.get(f"{link}/f/config.json", headers={"Accept": "text/html"})
    assert r.status_code == 403
    assert "expired" in r.text


def test_used_up_link_is_403(client: TestClient, world: World) -> None:
    link = _link(client, world, uses=1)
    for path in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
        assert client.get(f"{link}/f/{path}").status_code == 200
    r = client.get(f"{link}/f/config.json", headers={"Accept": "text/html"})
    assert r.status_code == 403
    assert "used up" in r.text


def test_revoking_the_grant_kills_the_link_on_the_next_request(
    client: TestClient, world: World, services: Services
) -> None:
    link = _link(client, world)
    assert client.get(f"{link}/f/config.json").status_code == 200
    revoke(services, world.ref, world.user_id, reason="licence breach")
    r = client.get(f"{link}/f/config.json", headers={"Accept": "application/json"})
    assert r.status_code == 403
    assert "revoked" in r.json()["error"]["message"]
    hub = client.get(f"/{world.repo_id}/resolve/1.0/config.json", headers=_auth(world))
    assert hub.status_code == 403 and hub.headers["x-error-code"] == "GatedRepo"


def test_revoking_one_link_kills_it_and_keeps_the_grant(
    client: TestClient, world: World, services: Services
) -> None:
    first, second = _link(client, world), _link(client, world)
    with transaction(services.sessions) as session:
        newest = links.list_links(session, user_id=world.user_id)[0]
        links.revoke_link(session, newest.id, reason="posted in a chat", actor="admin@lab")
        links.revoke_link(session, newest.id, reason="again", actor="admin@lab")  # no-op
    r = client.get(f"{second}/f/config.json", headers={"Accept": "application/json"})
    assert r.status_code == 403 and "revoked" in r.json()["error"]["message"]
    assert client.get(f"{first}/f/config.json").status_code == 200
    with transaction(services.sessions) as session:
        tags = session.scalars(select(AuditEvent.tag)).all()
    assert tags.count("distribution:link:revoked") == 1


def test_every_use_and_refusal_is_audited(
    client: TestClient, world: World, services: Services
) -> None:
    link = _link(client, world)
    client.get(f"{link}/f/config.json", headers={"Range": "bytes=0-9", "User-Agent": "tester/1"})
    revoke(services, world.ref, world.user_id)
    client.get(f"{link}/f/config.json")
    with transaction(services.sessions) as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    used = [e for e in events if e.tag == "distribution:file:downloaded"]
    assert used[-1].payload["bytes"] == 10
    assert used[-1].payload["range"] == [0, 10]
    assert used[-1].payload["user_agent"] == "tester/1"
    assert used[-1].ip
    refused = [e for e in events if e.tag == "distribution:file:refused"]
    assert refused and "revoked" in refused[-1].payload["reason"]


def test_hub_answers_gated_without_a_grant_and_not_found_for_unknown(
    client: TestClient, world: World, services: Services
) -> None:
    _, stranger = add_person(services, "eve@lab.example")
    r = client.get(
        f"/api/models/{world.repo_id}/revision/1.0", headers={"Authorization": f"Bearer {stranger}"}
    )
    assert (r.status_code, r.headers["x-error-code"]) == (403, "GatedRepo")
    # An in-house release does not exist for an outsider, exactly like an unknown name...
    r = client.get(f"/api/models/{world.repo_id}/revision/1.0")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
    # ...while a research release is gated: visible, and refused without a grant.
    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, f"{world.model}@1.0")
        set_circle(session, release, "research", actor="test")
    r = client.get(f"/api/models/{world.repo_id}/revision/1.0")
    assert (r.status_code, r.headers["x-error-code"]) == (401, "GatedRepo")
    r = client.get("/api/models/lab/nope/revision/1.0", headers=_auth(world))
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
    r = client.get(f"/api/models/{world.repo_id}/revision/9.9", headers=_auth(world))
    assert r.headers["x-error-code"] == "RevisionNotFound"
    r = client.head(f"/{world.repo_id}/resolve/1.0/missing.bin", headers=_auth(world))
    assert (r.status_code, r.headers["x-error-code"]) == (404, "EntryNotFound")
    assert r.headers["x-repo-commit"]


def test_the_hub_accepts_the_recipient_commit_as_revision(client: TestClient, world: World) -> None:
    info = client.get(f"/api/models/{world.repo_id}/revision/1.0", headers=_auth(world)).json()
    again = client.get(f"/api/models/{world.repo_id}/revision/{info['sha']}", headers=_auth(world))
    assert again.status_code == 200 and again.json()["sha"] == info["sha"]
    tree = client.get(
        f"/api/models/{world.repo_id}/tree/{info['sha']}",
        params={"recursive": "true"},
        headers=_auth(world),
    ).json()
    assert {e["path"] for e in tree} == {s["rfilename"] for s in info["siblings"]}


def test_download_script_and_link_page(client: TestClient, world: World) -> None:
    link = _link(client, world)
    page = client.get(link, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "model.safetensors" in page.text
    script = client.get(f"{link}/download.sh").text
    assert script.startswith("#!/bin/sh") and "curl" in script

"""A leak from report to action: incident, trace, evidence pack, grant revoked, notice, audited.

Driven through the JSON API as an admin's token would, on SQLite and PostgreSQL; the pack is
then checked offline as an outsider would (the key, the archive, nothing of the server).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ringfence.access.circles import set_circle
from ringfence.access.hooks import WideningHeld
from ringfence.access.licences import install_research_licence
from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.accounts.services import start_session
from ringfence.accounts.tokens import create_token
from ringfence.audit.models import AuditEvent
from ringfence.audit.services import verify as verify_chain
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.distribution import manifests
from ringfence.distribution.client import verify_directory
from ringfence.errors import IntegrityError
from ringfence.incidents import pack
from ringfence.incidents.models import CustodyStep
from ringfence.incidents.services import blocking_incidents
from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.fixtures_access import make_user
from tests.functional.test_trace_evidence import _issue
from tests.unit.distribution.world import World, make_world


@pytest.fixture
def leak(services: Services, tiny_model: Path, tmp_path: Path) -> tuple[World, Path]:
    """A release under the research licence, bob's issued copy of it (the leaked file)."""
    world = make_world(services, tiny_model, email="bob@uni.example")
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, world.ref)
        release.licence = install_research_licence(s, actor="test")
    return world, _issue(services, world.ref, world.user_id, tmp_path / "leaked.safetensors")


@pytest.fixture
def admin(services: Services) -> Iterator[TestClient]:
    """The app, and an admin's token on every request."""
    with transaction(services.sessions) as s:
        user = make_user(s, "admin@lab.example", role="admin", secrets=services.secrets)
        raw = create_token(s, user, "admin", actor="test").raw
    with TestClient(create_app(services)) as client:
        client.headers["Authorization"] = f"Bearer {raw}"
        yield client


def test_leak_to_incident_trace_pack_revocation_and_notice(
    services: Services, leak: tuple[World, Path], admin: TestClient, tmp_path: Path
) -> None:
    world, leaked = leak
    r = admin.post(
        "/api/v1/incidents",
        json={"kind": "file", "source": "https://forum.example/t/1234", "summary": "posted"},
    )
    assert r.status_code == 201, r.text
    incident = r.json()["id"]
    assert r.json()["state"] == "open" and r.json()["release"] is None

    with leaked.open("rb") as fh:
        r = admin.post(
            f"/api/v1/incidents/{incident}/trace",
            files={"suspect": ("leaked.safetensors", fh, "application/octet-stream")},
        )
    assert r.status_code == 200, r.text
    trace = r.json()
    assert trace["payload"]["release"] == world.ref
    assert [a["recipient"] for a in trace["payload"]["accused"]] == ["bob@uni.example"]

    shown = admin.get(f"/api/v1/incidents/{incident}").json()
    assert shown["release"] == world.ref
    suspect = next(e for e in shown["evidence"] if e["kind"] == "suspect")
    assert suspect["sha256"] == manifests.sha256_file(leaked)
    assert [s["step"] for s in suspect["custody"]] == ["received", "stored", "traced"]
    assert all(e["custody_intact"] for e in shown["evidence"])
    [bob] = shown["implicated"]
    assert bob["recipient"] == "bob@uni.example"
    assert [(g["id"], g["state"]) for g in bob["grants"]] == [(world.grant_id, "active")]
    assert {"grant", "fingerprint:recipient:registered"} <= {r["kind"] for r in bob["records"]}

    # the open incident holds its release from widening
    with services.sessions() as s:
        release = catalogue.get_release(s, world.ref)
        assert [i.id for i in blocking_incidents(s, release.id)] == [incident]
        with pytest.raises(WideningHeld, match=f"incident {incident}"):
            set_circle(s, release, "research", reason="widen", actor="test")
        s.rollback()

    r = admin.post(
        f"/api/v1/incidents/{incident}/revoke-grant",
        json={"grant_id": world.grant_id, "reason": "leaked copy traced to this grant"},
    )
    assert r.status_code == 200, r.text
    with services.sessions() as s:
        assert s.get(Grant, world.grant_id).state == "revoked"  # type: ignore[union-attr]

    r = admin.post(f"/api/v1/incidents/{incident}/notice")
    assert r.status_code == 200, r.text
    text = r.text
    assert world.ref in text and suspect["sha256"] in text
    assert "https://forum.example/t/1234" in text and "No redistribution." in text
    assert services.settings.mail_from in text
    edited = text.replace("To whom it may concern", "Dear abuse team")
    assert admin.put(f"/api/v1/incidents/{incident}/notice", json={"text": edited}).is_success
    html = admin.get(f"/api/v1/incidents/{incident}/notice?format=html")
    assert "Dear abuse team" in html.text and html.headers["content-type"].startswith("text/html")
    r = admin.post(f"/api/v1/incidents/{incident}/notice/send", json={"to": "abuse@host.example"})
    assert r.status_code == 200, r.text

    r = admin.post(f"/api/v1/incidents/{incident}/pack")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = r.content
    key = admin.get("/api/v1/distribution/signing-key.pem").content

    # offline, as the documented command does: unzip, then check the directory
    check = pack.verify(archive, key)
    assert check.name == f"incident-{incident}"
    unpacked = tmp_path / "pack"
    zipfile.ZipFile(io.BytesIO(archive)).extractall(unpacked)
    assert verify_directory(unpacked, key).ok
    assert suspect["sha256"] in (unpacked / "hashes.txt").read_text()
    assert "Dear abuse team" in (unpacked / "notice.txt").read_text()
    # an altered pack does not verify
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(tampered, "w") as out:
        for info in src.infolist():
            body = src.read(info)
            out.writestr(info, body.replace(b"bob@uni.example", b"eve@uni.example"))
    with pytest.raises(IntegrityError, match=r"incident\.json"):
        pack.verify(tampered.getvalue(), key)

    # the admin's pages show the same evidence pack
    with transaction(services.sessions) as s:
        user = s.scalars(select(User).where(User.email == "admin@lab.example")).one()
        cookie = start_session(s, user, ip=None, user_agent=None)
    page = admin.get(
        f"/admin/incidents/{incident}",
        headers={"Authorization": "", "Cookie": f"rf_session={cookie}"},
    )
    assert page.status_code == 200, page.text
    for seen in ("bob@uni.example", suspect["sha256"], "Chain of custody intact", "grant_revoked"):
        assert seen in page.text
    listing = admin.get("/admin/incidents", headers={"Cookie": f"rf_session={cookie}"})
    assert "https://forum.example/t/1234" in listing.text
    text_page = admin.get(
        f"/admin/incidents/{incident}/notice.txt", headers={"Cookie": f"rf_session={cookie}"}
    )
    assert "Dear abuse team" in text_page.text

    r = admin.post(f"/api/v1/incidents/{incident}/close", json={"resolution": "taken down"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, world.ref)
        assert blocking_incidents(s, release.id) == []
        set_circle(s, release, "partners", reason="widen after the incident", actor="test")

    with services.sessions() as s:
        tags = [t for (t,) in s.execute(select(AuditEvent.tag).order_by(AuditEvent.seq))]
        assert verify_chain(s).ok
    expected = [
        "incident:incident:opened",
        "incident:evidence:added",
        "tracing:trace:run",
        "incident:trace:attached",
        "access:grant:revoked",
        "incident:action:taken",
        "incident:notice:drafted",
        "incident:notice:edited",
        "incident:notice:sent",
        "incident:action:taken",
        "incident:pack:exported",
        "incident:incident:closed",
    ]
    found = [t for t in tags if t.startswith("incident:") or t in expected]
    assert found == expected

    # a custody step altered in the database no longer fits its chain
    with transaction(services.sessions) as s:
        step = s.scalars(select(CustodyStep).order_by(CustodyStep.id)).first()
        assert step is not None
        step.actor = "someone-else@lab.example"
    shown = admin.get(f"/api/v1/incidents/{incident}").json()
    assert shown["evidence"][0]["custody_intact"] is False


def test_bad_input_is_one_line_and_leaves_nothing(services: Services, admin: TestClient) -> None:
    r = admin.post("/api/v1/incidents", json={"kind": "rumour", "source": "x"})
    assert r.status_code == 400 and "kind" in r.json()["error"]["message"]
    r = admin.post("/api/v1/incidents", json={"kind": "endpoint", "source": "ftp://x"})
    assert r.status_code == 400
    r = admin.post("/api/v1/incidents", json={"kind": "url", "source": "https://x.example/a"})
    incident = r.json()["id"]
    r = admin.post(
        f"/api/v1/incidents/{incident}/trace",
        files={"suspect": ("junk.bin", b"not a model", "application/octet-stream")},
    )
    assert 400 <= r.status_code < 500 and "\n" not in r.json()["error"]["message"]
    assert admin.get(f"/api/v1/incidents/{incident}").json()["evidence"] == []
    r = admin.post(f"/api/v1/incidents/{incident}/notice")
    assert r.status_code == 400 and "names no release" in r.json()["error"]["message"]
    assert admin.get("/api/v1/incidents/999").status_code == 404

"""Whole access flows over HTTP with a real SMTP server capturing the mail, and the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from ringfence.audit.models import AuditEvent
from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import CliRunner
from tests.fixtures_access import (
    PASSWORD,
    Inbox,
    make_release,
    make_user,
)
from tests.live import free_port, serve

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


@pytest.fixture
def smtp_services(home: Path, smtp_server: tuple[int, Inbox]) -> Services:
    port, _ = smtp_server
    svc = build(
        Settings(home=home, mail_backend="smtp", smtp_port=port, base_url="http://testserver")
    )
    svc.prepare()
    with transaction(svc.sessions) as session:
        make_release(session, circle="research")
        make_user(session, "rev@lab.example", role="reviewer")
        make_user(session, "admin@lab.example", role="admin")
    return svc


@pytest.fixture
def client(smtp_services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(smtp_services)) as c:
        yield c


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_sign_up_request_review_narrow(
    client: TestClient,
    smtp_server: tuple[int, Inbox],
    smtp_services: Services,
) -> None:
    _, inbox = smtp_server
    page = client.get("/signup")
    # Without the CSRF token the form is refused.
    r = client.post("/signup", data={"email": "ada@uni.example", "password": PASSWORD})
    assert r.status_code == 403
    r = client.post(
        "/signup",
        data={"email": "ada@uni.example", "password": PASSWORD, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    link = re.search(r"http://testserver(/verify\?token=\S+)", inbox.last_body("ada@uni.example"))
    assert link
    # The same sign-up again answers the same (no enumeration).
    r2 = client.post(
        "/signup",
        data={"email": "ada@uni.example", "password": PASSWORD, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert (r2.status_code, r2.headers["location"]) == (r.status_code, r.headers["location"])
    assert "already has one" in inbox.last_body("ada@uni.example")
    assert client.get(link.group(1), follow_redirects=False).status_code == 303

    sign_in(client, "ada@uni.example")
    release_page = client.get("/models/tiny/1.0")
    assert "Request access" in release_page.text
    token = csrf(release_page.text)
    r = client.post("/models/tiny/1.0/request", data={"csrf_token": token, "country": "ZZ"})
    assert r.status_code == 400 and "Affiliation: this field is required" in r.text
    r = client.post(
        "/models/tiny/1.0/request",
        data={
            "csrf_token": token,
            "affiliation": "Uni",
            "country": "FR",
            "intended_use": "Research",
            "no_redistribution": "on",
        },
    )
    assert r.status_code == 200 and "pending" in r.text
    assert "was received" in inbox.to("ada@uni.example")[-1]["Subject"]

    # The reviewer approves from the queue.
    reviewer = TestClient(client.app)
    sign_in(reviewer, "rev@lab.example")
    queue = reviewer.get("/review")
    request_id = re.search(r'name="ids" value="(\d+)"', queue.text)
    assert request_id
    r = reviewer.post(
        "/review/decide",
        data={"csrf_token": csrf(queue.text), "action": "approve", "ids": request_id.group(1)},
    )
    assert r.status_code == 200 and "Decisions recorded" in r.text
    assert "approved" in inbox.to("ada@uni.example")[-1]["Subject"]

    page = client.get("/models/tiny/1.0")
    assert "accept the licence" in page.text
    sha = re.search(r'name="licence_sha256" value="([0-9a-f]{64})"', page.text)
    assert sha
    r = client.post(
        "/models/tiny/1.0/licence",
        data={"csrf_token": csrf(page.text), "licence_sha256": sha.group(1), "agree": "on"},
    )
    assert "You may download this release" in r.text

    # The admin narrows to partners: the grant is revoked at once and the researcher is told.
    admin = TestClient(client.app)
    sign_in(admin, "admin@lab.example")
    circles = admin.get("/admin/circles")
    r = admin.post(
        "/admin/circles/set",
        data={
            "csrf_token": csrf(circles.text),
            "release": "tiny@1.0",
            "circle": "partners",
            "reason": "risk review",
        },
    )
    assert r.status_code == 200
    assert "revoked" in inbox.to("ada@uni.example")[-1]["Subject"]
    page = client.get("/account")
    assert "revoked" in page.text and "risk review" in page.text
    audit = admin.get("/admin/audit?tag=access:circle")
    assert "access:circle:changed" in audit.text and "Hash chain intact" in audit.text
    # A researcher cannot open lab pages.
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/review").status_code == 403


def test_login_rate_limit_and_generic_message(client: TestClient) -> None:
    page = client.get("/login")
    token = csrf(page.text)
    texts = set()
    for email in ("rev@lab.example", "nobody@lab.example"):
        r = client.post(
            "/login", data={"email": email, "password": "wrong password", "csrf_token": token}
        )
        assert r.status_code == 401
        texts.add(re.search(r'data-testid="error">([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
    assert len(texts) == 1
    for _ in range(4):
        client.post(
            "/login",
            data={"email": "rev@lab.example", "password": "wrong!!!!!!", "csrf_token": token},
        )
    r = client.post(
        "/login", data={"email": "rev@lab.example", "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429


def test_api_with_tokens_and_cli(
    client: TestClient, cli: CliRunner, smtp_services: Services
) -> None:
    made = cli("tokens", "create", "--user", "rev@lab.example", "--scope", "admin", "--json")
    assert made.code == 0, made.err
    admin_token = made.json()["token"]  # type: ignore[index]
    cli("users", "add", "r2@uni.example")
    reader = cli("tokens", "create", "--user", "r2@uni.example", "--scope", "read", "--json")
    read_auth = {"Authorization": f"Bearer {reader.json()['token']}"}  # type: ignore[index]
    researcher = cli(
        "tokens", "create", "--user", "r2@uni.example", "--scope", "download", "--json"
    )
    token = researcher.json()["token"]  # type: ignore[index]
    auth = {"Authorization": f"Bearer {token}"}
    answers = {
        "affiliation": "Uni",
        "country": "de",
        "intended_use": "Education",
        "no_redistribution": True,
    }
    # A read token reads; asking for access is an act in the holder's name.
    refused = client.post(
        "/api/v1/access/releases/tiny/1.0/requests", json={"answers": answers}, headers=read_auth
    )
    assert refused.status_code == 403 and "'read' scope" in refused.json()["error"]["message"]
    r = client.post(
        "/api/v1/access/releases/tiny/1.0/requests", json={"answers": answers}, headers=auth
    )
    assert r.status_code == 200, r.text
    again = client.post(
        "/api/v1/access/releases/tiny/1.0/requests", json={"answers": {}}, headers=auth
    )
    assert again.json()["id"] == r.json()["id"]
    assert client.get("/api/v1/access/review", headers=auth).status_code == 403
    queue = client.get(
        "/api/v1/access/review", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()
    assert [q["user"] for q in queue] == ["r2@uni.example"]
    listed = cli("grants", "requests", "--json").json()
    assert listed[0]["answers"]["country"] == "DE"  # type: ignore[index]
    assert cli("grants", "reject", str(queue[0]["id"]), "--reason", "x" * 501).code != 0
    assert cli("grants", "approve", str(queue[0]["id"]), "--json").code == 0
    status = client.get("/api/v1/access/releases/tiny/1.0", headers=auth).json()
    assert status["grant"]["state"] == "active" and not status["can_download"]
    assert "accept the licence" in status["reason"]
    r = client.post(
        "/api/v1/access/releases/tiny/1.0/licence",
        json={"sha256": status["licence"]["sha256"]},
        headers=auth,
    )
    assert r.status_code == 200
    assert client.get("/api/v1/access/releases/tiny/1.0", headers=auth).json()["can_download"]
    bad = client.get("/api/v1/access/grants", headers={"Authorization": "Bearer rf_nope"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "AuthenticationRequired"

    result = cli("circle", "set", "tiny@1.0", "in-house", "--reason", "incident", "--json")
    assert result.code == 0 and result.json()["revoked"] == 1  # type: ignore[index]
    grants = cli("grants", "list", "--json").json()
    assert grants[0]["state"] == "revoked"  # type: ignore[index]
    assert cli("audit", "verify").code == 0


def test_audit_verify_detects_tampering(cli: CliRunner, smtp_services: Services) -> None:
    assert cli("audit", "verify", "--json").json()["ok"]  # type: ignore[index]
    with transaction(smtp_services.sessions) as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="someone-else"))
    result = cli("audit", "verify")
    assert result.code == 1
    assert "broken at event 2" in result.err


def test_client_commands_against_a_live_server(
    smtp_services: Services, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ringfence request` and `ringfence licence accept` talk to a server with a token."""
    cli("users", "add", "client@uni.example")
    made = cli("tokens", "create", "--user", "client@uni.example", "--scope", "download", "--json")
    token = made.json()["token"]  # type: ignore[index]
    with serve(create_app(smtp_services), free_port()) as url:
        assert cli("request", "tiny@1.0", "--server", url).code == 3  # no token yet
        monkeypatch.setenv("RINGFENCE_TOKEN", token)
        monkeypatch.setenv("RINGFENCE_URL", url)
        missing = cli("request", "tiny@1.0")
        assert missing.code == 2 and "Affiliation: this field is required" in missing.err
        fields = [
            "--field",
            "affiliation=Uni",
            "--field",
            "country=NL",
            "--field",
            "intended_use=Research",
            "--field",
            "no_redistribution=on",
        ]
        made = cli("request", "tiny@1.0", *fields, "--json")
        assert made.code == 0 and made.json()["state"] == "pending"  # type: ignore[index]
        accepted = cli("licence", "accept", "tiny@1.0", "--yes", "--json")
        assert accepted.code == 0, accepted.err
        assert accepted.json()["licence"] == "research-only@1"  # type: ignore[index]
        unknown = cli("request", "nope@1.0")
        assert unknown.code == 2 and "no release nope@1.0" in unknown.err
    down = cli("request", "tiny@1.0", "--server", url)
    assert down.code == 4 and "cannot reach" in down.err

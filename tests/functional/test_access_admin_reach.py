"""What had no caller now has a page, an API route and a command: policies, NDA revocation,
expiry; and the licence, grant and password rules that CLI and pages now share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ringfence.access import requests
from ringfence.access.models import AccessRequest
from ringfence.accounts import services as accounts
from ringfence.accounts import tokens
from ringfence.accounts.models import APIToken, User
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.db import transaction, utcnow
from ringfence.errors import InvalidInput
from ringfence.organisations.models import NDA
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import CliRunner
from tests.fixtures_access import make_partner, make_release, make_user

FORM = [{"name": "team", "label": "Team", "type": "text", "required": True}]


@pytest.fixture
def svc(home: Path) -> Services:
    built = build(Settings(home=home, dev_outbox=True, base_url="http://testserver"))
    built.prepare()
    with transaction(built.sessions) as session:
        make_release(session, circle="research")
        make_user(session, "admin@lab.example", role="admin", secrets=built.secrets)
        make_user(session, "member@uni.example")
        make_partner(session)
    return built


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc)) as test_client:
        yield test_client


def _token(svc: Services, email: str, scope: str) -> dict[str, str]:
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        raw = tokens.create_token(session, user, scope, actor="test").raw
    return {"Authorization": f"Bearer {raw}"}


def _tags(svc: Services) -> list[str]:
    with svc.sessions() as session:
        return list(session.scalars(select(AuditEvent.tag).order_by(AuditEvent.seq)))


def test_policy_through_the_api_changes_the_form_people_fill(
    svc: Services, client: TestClient
) -> None:
    admin = _token(svc, "admin@lab.example", "admin")
    url = "/api/v1/access/releases/tiny/1.0/policy"
    refused = client.put(url, json={"grant_days": 0}, headers=admin)
    assert refused.status_code == 400 and "days" in refused.json()["error"]["message"]
    body = {"fields": FORM, "rules": [{"kind": "email_domain", "domains": ["uni.example"]}]}
    changed = client.put(url, json=body | {"grant_days": 30}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["grant_days"] == 30
    assert client.get(url, headers=admin).json()["fields"][0]["name"] == "team"
    assert EventTag.Access.PolicyChanged in _tags(svc)
    # The member's form is the new one, and the domain rule approves them at once.
    member = _token(svc, "member@uni.example", "download")
    status = client.get("/api/v1/access/releases/tiny/1.0", headers=member).json()
    assert [f["name"] for f in status["fields"]] == ["team"]
    asked = client.post(
        "/api/v1/access/releases/tiny/1.0/requests",
        json={"answers": {"team": "vision"}},
        headers=member,
    )
    assert asked.json()["state"] == "approved"
    # Not for a member's token, whatever its scope allows elsewhere.
    assert client.put(url, json=body, headers=member).status_code == 403


def test_policy_nda_revoke_and_expire_commands(
    cli: CliRunner, svc: Services, tmp_path: Path
) -> None:
    form = tmp_path / "form.json"
    form.write_text(json.dumps(FORM))
    set_ = cli(
        "policy", "set", "tiny@1.0", "--fields", str(form), "--rule", "partner_nda",
        "--rule", "email_domain:lab.example", "--grant-days", "90", "--json",
    )  # fmt: skip
    assert set_.code == 0, set_.err
    shown = cli("policy", "show", "tiny@1.0", "--json").json()
    assert shown["rules"] == [
        {"kind": "partner_nda"},
        {"kind": "email_domain", "domains": ["lab.example"]},
    ]
    assert shown["grant_days"] == 90
    bad = cli("policy", "set", "tiny@1.0", "--rule", "everyone")
    assert bad.code != 0 and "rules[0].kind" in bad.err

    with svc.sessions() as session:
        nda_id = session.scalars(select(NDA.id)).one()
    assert cli("nda", "revoke", str(nda_id), "--reason", "").code != 0
    revoked = cli("nda", "revoke", str(nda_id), "--reason", "ended early", "--json")
    assert revoked.code == 0, revoked.err
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"]
    assert EventTag.Access.NDARevoked in _tags(svc)

    with transaction(svc.sessions) as session:
        member = session.scalars(select(User).where(User.email == "member@uni.example")).one()
        release = requests.releases_with_requests(session)[0]
        req = requests.submit_request(session, member, release, {"team": "x"})
        req.created_at = utcnow() - timedelta(days=31)
    expired = cli("expire", "--json")
    assert expired.code == 0, expired.err
    assert expired.json() == {"grants_expired": 0, "requests_expired": 1}
    assert cli("expire", "--json").json()["requests_expired"] == 0
    with svc.sessions() as session:
        assert session.scalars(select(AccessRequest.state)).one() == "expired"


def test_nda_revoke_through_the_api_and_the_page(svc: Services, client: TestClient) -> None:
    with svc.sessions() as session:
        nda_id = session.scalars(select(NDA.id)).one()
    admin = _token(svc, "admin@lab.example", "admin")
    url = f"/api/v1/organisations/ndas/{nda_id}/revoke"
    assert client.post(url, json={"reason": ""}, headers=admin).status_code == 400
    done = client.post(url, json={"reason": "breach"}, headers=admin)
    assert done.status_code == 200 and done.json()["active"] is False
    missing = client.post(
        "/api/v1/organisations/ndas/999/revoke", json={"reason": "x"}, headers=admin
    )
    assert missing.status_code == 404


def test_cli_and_page_add_the_same_licence_text_as_the_same_version(
    cli: CliRunner, svc: Services, tmp_path: Path
) -> None:
    text = "# Custom licence\r\n\r\nUse it for research.\r\n"
    path = tmp_path / "custom.md"
    path.write_bytes(text.encode())
    first = cli("licence", "add", "custom", "--file", str(path), "--json").json()
    from ringfence.access import licences

    with transaction(svc.sessions) as session:
        again = licences.add_licence(session, "custom", text=text, actor="admin@lab.example")
        assert (again.ref, again.sha256, again.title) == (
            first["licence"],
            first["sha256"],
            "Custom licence",
        )


def test_an_operator_set_password_follows_the_policy_and_ends_credentials(svc: Services) -> None:
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == "member@uni.example")).one()
        tokens.create_token(session, user, "read", actor="test")
        with pytest.raises(InvalidInput):
            accounts.set_password_by_operator(session, user, "password1", actor="cli")
        accounts.set_password_by_operator(session, user, "a calm river of lanterns", actor="cli")
        assert session.scalars(select(APIToken.revoked_at)).one() is not None
    assert EventTag.Account.PasswordSet in _tags(svc)

"""Access commands as an operator runs them: users, institutions, NDAs, tokens, licences,
grants and circles, each read back through another command, each with a refused input."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from ringfence.access.models import Grant
from ringfence.db import transaction, utcnow
from ringfence.web.app import create_app
from tests.conftest import CliRunner
from tests.fixtures_access import Inbox, make_release
from tests.functional.cli.checks import PERMISSION, ok, record, records, refused
from tests.functional.cli.conftest import ADMIN, REF, Lab


def user(cli: CliRunner, email: str) -> dict[str, object]:
    """The `users list` row of one person."""
    rows = [u for u in records(cli, "users", "list") if u["email"] == email]
    assert len(rows) == 1, rows
    return rows[0]


def grants_of(cli: CliRunner, email: str) -> list[dict[str, object]]:
    """Everyone's grants of one person, newest first."""
    return records(cli, "grants", "list", "--user", email)


# users


def test_users_add_list_and_set(cli: CliRunner) -> None:
    added = record(cli, "users", "add", "carol@uni.example", "--role", "staff", "--name", "Carol")
    assert added["role"] == "staff" and added["verified"] and added["active"]
    assert "carol" in ok(cli, "users", "list").out  # a table as wide as the terminal
    assert user(cli, "carol@uni.example")["role"] == "staff"

    changed = record(cli, "users", "set", "carol@uni.example", "--role", "member", "--disabled")
    assert changed["role"] == "member" and changed["active"] is False
    assert user(cli, "carol@uni.example") == changed


def test_users_refused(cli: CliRunner) -> None:
    refused(cli, "users", "add", "wiz@uni.example", "--role", "wizard", says="not a role")
    assert "wiz@uni.example" not in [u["email"] for u in records(cli, "users", "list")]
    ok(cli, "users", "add", "dave@uni.example")
    refused(cli, "users", "set", "nobody@uni.example", "--role", "admin", says="no user")
    refused(cli, "users", "set", "dave@uni.example", "--role", "wizard", says="not a role")
    assert user(cli, "dave@uni.example")["role"] == "member"
    refused(cli, "users", "list", "--bogus", usage=True)


def test_two_factor_reset_refused(cli: CliRunner) -> None:
    # The reset itself is tested in tests/functional/test_two_factor.py.
    refused(cli, "users", "two-factor-reset", "nobody@uni.example", "--reason", "x", says="no user")
    ok(cli, "users", "add", "nofactor@uni.example")
    refused(
        cli, "users", "two-factor-reset", "nofactor@uni.example", "--reason", "x", says="not on"
    )
    refused(cli, "users", "two-factor-reset", ADMIN, usage=True, says="--reason")
    assert user(cli, ADMIN)["two_factor"] is True


# institutions and NDAs


def test_institutions_add_and_list(cli: CliRunner) -> None:
    added = record(
        cli, "institutions", "add", "North Uni", "--domain", "north.example", "--domain", "n.ac"
    )
    assert added == {"name": "North Uni", "domains": ["n.ac", "north.example"]}  # sorted
    listed = {i["name"]: i["domains"] for i in records(cli, "institutions", "list")}
    assert listed["North Uni"] == "n.ac, north.example"
    assert "North Uni" in ok(cli, "institutions", "list").out


def test_institutions_refused(cli: CliRunner) -> None:
    ok(cli, "institutions", "add", "South Uni", "--domain", "south.example")
    refused(cli, "institutions", "add", "South Uni", says="already exists")
    refused(cli, "institutions", "add", "Bad Uni", "--domain", "not_a_domain", says="domain")
    names = [i["name"] for i in records(cli, "institutions", "list")]
    assert names.count("South Uni") == 1 and "Bad Uni" not in names


def test_nda_add_list_countersign(cli: CliRunner, tmp_path: Path) -> None:
    ok(cli, "institutions", "add", "East Uni", "--domain", "east.example")
    scan = tmp_path / "east-nda.pdf"
    scan.write_bytes(b"%PDF-1.4 signed by the dean")
    nda = record(
        cli,
        "nda",
        "add",
        "East Uni",
        "--document",
        str(scan),
        "--signatory",
        "Dean East",
        "--expires",
        "2099-01-01",
    )
    assert nda["sha256"] == hashlib.sha256(scan.read_bytes()).hexdigest()
    assert nda["active"] is False and nda["countersigned_by"] is None
    assert nda in records(cli, "nda", "list")

    signed = record(cli, "nda", "countersign", str(nda["id"]), "--by", ADMIN)
    assert signed["active"] is True and signed["countersigned_by"] == ADMIN
    assert signed in records(cli, "nda", "list")
    assert "East" in ok(cli, "nda", "list").out  # a table as wide as the terminal


def test_nda_refused(cli: CliRunner, tmp_path: Path) -> None:
    ok(cli, "institutions", "add", "West Uni", "--domain", "west.example")
    ok(cli, "users", "add", "member@west.example")
    scan = tmp_path / "west-nda.pdf"
    scan.write_bytes(b"%PDF-1.4 west")
    common = ("--document", str(scan), "--signatory", "Dean West")
    refused(
        cli, "nda", "add", "Nowhere Uni", *common, "--expires", "2099-01-01", says="no institution"
    )
    refused(cli, "nda", "add", "West Uni", *common, "--expires", "next year", says="YYYY-MM-DD")
    refused(
        cli,
        "nda",
        "add",
        "West Uni",
        "--document",
        str(tmp_path / "none.pdf"),
        "--signatory",
        "x",
        "--expires",
        "2099-01-01",
        usage=True,
        says="exist",  # Click's box may wrap a long path anywhere before it
    )
    assert not [n for n in records(cli, "nda", "list") if n["institution"] == "West Uni"]

    nda = record(cli, "nda", "add", "West Uni", *common, "--expires", "2099-01-01")
    refused(cli, "nda", "countersign", "99999", "--by", ADMIN, says="no NDA 99999")
    refused(
        cli,
        "nda",
        "countersign",
        str(nda["id"]),
        "--by",
        "member@west.example",
        code=PERMISSION,
        says="not an admin",
    )
    assert nda in records(cli, "nda", "list")  # still not countersigned


# tokens


def test_tokens_list_and_revoke(cli: CliRunner, lab: Lab) -> None:
    ok(cli, "users", "add", "tok@uni.example")
    made = record(cli, "tokens", "create", "--user", "tok@uni.example", "--name", "laptop")
    listed = records(cli, "tokens", "list", "--user", "tok@uni.example")
    assert [(t["id"], t["scope"], t["name"], t["revoked"]) for t in listed] == [
        (made["id"], "read", "laptop", False)
    ]
    assert str(made["token"]) not in ok(cli, "tokens", "list", "--user", "tok@uni.example").out
    with TestClient(create_app(lab.services)) as client:
        auth = {"Authorization": f"Bearer {made['token']}"}
        assert client.get("/api/v1/releases", headers=auth).status_code == 200

        revoked = record(cli, "tokens", "revoke", str(made["id"]), "--user", "tok@uni.example")
        assert revoked == {"id": made["id"], "revoked": True}
        assert records(cli, "tokens", "list", "--user", "tok@uni.example")[0]["revoked"] is True
        assert client.get("/api/v1/releases", headers=auth).status_code == 401


def test_tokens_refused(cli: CliRunner) -> None:
    ok(cli, "users", "add", "owner@uni.example")
    ok(cli, "users", "add", "other@uni.example")
    made = record(cli, "tokens", "create", "--user", "owner@uni.example")
    refused(cli, "tokens", "list", "--user", "nobody@uni.example", says="no user")
    refused(cli, "tokens", "list", usage=True, says="--user")
    # Someone else's token id is not found for you, and stays alive.
    refused(
        cli, "tokens", "revoke", str(made["id"]), "--user", "other@uni.example", says="no token"
    )
    refused(cli, "tokens", "revoke", "not-a-number", "--user", "owner@uni.example", usage=True)
    assert records(cli, "tokens", "list", "--user", "owner@uni.example")[0]["revoked"] is False


# licences


def release_licence(cli: CliRunner, ref: str) -> object:
    """The licence `releases show` names for a release."""
    return record(cli, "releases", "show", ref)["licence"]


def test_licence_add_and_set(cli: CliRunner, lab: Lab, tmp_path: Path, inbox: Inbox) -> None:
    with transaction(lab.services.sessions) as session:
        make_release(session, "licensed", "1.0", licensed=False)
    shipped = record(cli, "licence", "add", "research-only")
    assert str(shipped["licence"]).startswith("research-only@")
    text = tmp_path / "partner.md"
    text.write_text("# Partner Evaluation Licence\n\nEvaluate only; do not redistribute.\n")
    first = record(cli, "licence", "add", "partner-eval", "--file", str(text))
    assert first["licence"] == "partner-eval@1" and first["title"] == "Partner Evaluation Licence"
    assert record(cli, "licence", "add", "partner-eval", "--file", str(text)) == first  # no-op
    text.write_text("# Partner Evaluation Licence\n\nEvaluate only, for one year.\n")
    second = record(cli, "licence", "add", "partner-eval", "--file", str(text), "--title", "PEL 2")
    assert second["licence"] == "partner-eval@2" and second["title"] == "PEL 2"

    ok(cli, "users", "add", "holder@uni.example", "--role", "staff")
    ok(cli, "grants", "add", "licensed@1.0", "--user", "holder@uni.example")
    done = record(cli, "licence", "set", "licensed@1.0", "partner-eval@1")
    assert done == {"release": "licensed@1.0", "licence": "partner-eval@1", "holders_notified": 1}
    assert release_licence(cli, "licensed@1.0") == "partner-eval@1"
    assert inbox.to("holder@uni.example"), "the grant holder was not told to accept the licence"
    ok(cli, "licence", "set", "licensed@1.0", "partner-eval")  # newest version
    assert release_licence(cli, "licensed@1.0") == "partner-eval@2"


def test_licence_refused(cli: CliRunner, lab: Lab, tmp_path: Path) -> None:
    with transaction(lab.services.sessions) as session:
        make_release(session, "unlicensed", "1.0", licensed=False)
    refused(cli, "licence", "add", "custom-terms", says="licence text")
    refused(cli, "licence", "add", "custom-terms", "--file", str(tmp_path / "none.md"), usage=True)
    refused(cli, "licence", "set", "unlicensed@1.0", "custom-terms", says="no licence")
    refused(cli, "licence", "set", "nope@1.0", "research-only", says="no release")
    refused(cli, "licence", "set", "unlicensed@1.0", usage=True)
    assert release_licence(cli, "unlicensed@1.0") is None


# grants and circles


def test_grants_add_for_a_person_and_an_institution(cli: CliRunner) -> None:
    ok(cli, "users", "add", "grantee@uni.example", "--role", "staff")
    made = record(cli, "grants", "add", REF, "--user", "grantee@uni.example", "--days", "30")
    assert made["state"] == "active" and made["via"] == "direct" and made["release"] == REF
    assert grants_of(cli, "grantee@uni.example") == [made]
    assert made in records(cli, "grants", "list", "--release", REF, "--state", "active")

    ok(cli, "institutions", "add", "Grant Uni", "--domain", "grant.example")
    seats = record(cli, "grants", "add", REF, "--institution", "Grant Uni", "--seats", "3")
    assert seats["institution"] == "Grant Uni" and seats["seats"] == 3


def test_grants_add_refused(cli: CliRunner) -> None:
    ok(cli, "users", "add", "ungranted@uni.example", "--role", "staff")
    refused(cli, "grants", "add", REF, says="exactly one of --user or --institution")
    refused(
        cli,
        "grants",
        "add",
        REF,
        "--user",
        "ungranted@uni.example",
        "--institution",
        "X",
        says="exactly one",
    )
    refused(cli, "grants", "add", "nope@1.0", "--user", "ungranted@uni.example", says="no release")
    refused(cli, "grants", "add", REF, "--user", "nobody@uni.example", says="no user")
    refused(cli, "grants", "add", REF, "--institution", "Nowhere Uni", says="no institution")
    assert grants_of(cli, "ungranted@uni.example") == []


def test_grants_revoke(cli: CliRunner, inbox: Inbox) -> None:
    ok(cli, "users", "add", "revokee@uni.example", "--role", "staff")
    made = record(cli, "grants", "add", REF, "--user", "revokee@uni.example")
    revoked = record(cli, "grants", "revoke", str(made["id"]), "--reason", "left the lab")
    assert revoked["state"] == "revoked" and revoked["revoked_reason"] == "left the lab"
    assert grants_of(cli, "revokee@uni.example") == [revoked]
    assert revoked in records(cli, "grants", "list", "--state", "revoked")
    assert "left the lab" in inbox.last_body("revokee@uni.example")


def test_grants_revoke_refused(cli: CliRunner) -> None:
    ok(cli, "users", "add", "kept@uni.example", "--role", "staff")
    made = record(cli, "grants", "add", REF, "--user", "kept@uni.example")
    refused(cli, "grants", "revoke", "99999", "--reason", "x", says="no grant 99999")
    refused(cli, "grants", "revoke", "abc", "--reason", "x", usage=True)
    refused(cli, "grants", "revoke", str(made["id"]), usage=True, says="--reason")
    assert grants_of(cli, "kept@uni.example") == [made]


def test_grants_expire(cli: CliRunner, lab: Lab) -> None:
    ok(cli, "users", "add", "lapsed@uni.example", "--role", "staff")
    ok(cli, "users", "add", "current@uni.example", "--role", "staff")
    lapsed = record(cli, "grants", "add", REF, "--user", "lapsed@uni.example")
    current = record(cli, "grants", "add", REF, "--user", "current@uni.example")
    with transaction(lab.services.sessions) as session:  # a year has passed for one grant
        session.execute(
            update(Grant)
            .where(Grant.id == lapsed["id"])
            .values(expires_at=utcnow() - timedelta(days=1))
        )
    assert record(cli, "grants", "expire")["grants_expired"] == 1
    assert grants_of(cli, "lapsed@uni.example")[0]["state"] == "expired"
    assert grants_of(cli, "current@uni.example") == [current]
    assert record(cli, "grants", "expire") == {"grants_expired": 0, "requests_expired": 0}
    refused(cli, "grants", "expire", "--bogus", usage=True)


def test_circle_show(cli: CliRunner) -> None:
    active = len(records(cli, "grants", "list", "--release", REF, "--state", "active"))
    shown = record(cli, "circle", "show", REF)
    assert shown == {"release": REF, "circle": "in-house", "active_grants": active}
    ok(cli, "users", "add", "circled@uni.example", "--role", "staff")
    ok(cli, "grants", "add", REF, "--user", "circled@uni.example")
    assert record(cli, "circle", "show", REF)["active_grants"] == active + 1
    assert "in-house" in ok(cli, "circle", "show", REF).out
    refused(cli, "circle", "show", "nope@1.0", says="no release")
    refused(cli, "circle", "show", usage=True)

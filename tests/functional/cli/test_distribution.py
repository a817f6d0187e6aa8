"""Distribution commands: a holder's signed links (made, listed, revoked) and their signed
manifests (computed, shown, checked against the served bytes and the lab's key)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from ringfence.distribution.manifests import verify_bundle
from ringfence.web.app import create_app
from tests.conftest import CliRunner
from tests.functional.cli.checks import ok, record, records, refused
from tests.functional.cli.conftest import REF, Lab


def holder(cli: CliRunner, email: str) -> None:
    """A staff member (in-house circle) with a grant of tiny@1.0."""
    ok(cli, "users", "add", email, "--role", "staff")
    ok(cli, "grants", "add", REF, "--user", email)


def path_of(url: object) -> str:
    """The path of a link URL (the test client speaks to the app, not the configured host)."""
    return urlsplit(str(url)).path


def test_links_create_list_revoke(cli: CliRunner, lab: Lab) -> None:
    holder(cli, "linked@lab.example")
    made = record(cli, "links", "create", REF, "--for", "linked@lab.example", "--uses", "2")
    assert made["uses"] == 2
    listed = records(cli, "links", "list", "--for", "linked@lab.example")
    assert [(link["copies"], link["state"]) for link in listed] == [("0.00/2", "live")]
    assert "live" in ok(cli, "links", "list").out
    with TestClient(create_app(lab.services)) as client:
        assert client.get(f"{path_of(made['url'])}/files.json").status_code == 200

        revoked = record(cli, "links", "revoke", str(listed[0]["id"]), "--reason", "mis-sent")
        assert revoked["id"] == listed[0]["id"] and revoked["revoked_at"] != "None"
        assert records(cli, "links", "list", "--for", "linked@lab.example")[0]["state"] == "revoked"
        assert client.get(f"{path_of(made['url'])}/files.json").status_code in (403, 410)
    # The grant stays: a new link works.
    assert records(cli, "grants", "list", "--user", "linked@lab.example")[0]["state"] == "active"


def test_links_refused(cli: CliRunner) -> None:
    ok(cli, "users", "add", "ungranted@lab.example", "--role", "staff")
    holder(cli, "kept@lab.example")
    refused(cli, "links", "create", REF, "--for", "ungranted@lab.example", code=3)
    refused(cli, "links", "create", "nope@1.0", "--for", "kept@lab.example", says="no release")
    refused(cli, "links", "create", REF, "--for", "kept@lab.example", "--hours", "0", says="hours")
    assert records(cli, "links", "list", "--for", "ungranted@lab.example") == []
    made = record(cli, "links", "create", REF, "--for", "kept@lab.example")
    refused(cli, "links", "list", "--for", "nobody@lab.example", says="no user")
    refused(cli, "links", "revoke", "99999", says="no download link 99999")
    refused(cli, "links", "revoke", "abc", usage=True)
    listed = records(cli, "links", "list", "--for", "kept@lab.example")
    assert [link["state"] for link in listed] == ["live"], made


def test_manifests_compute_show_key(cli: CliRunner, lab: Lab, tmp_path: Path) -> None:
    holder(cli, "signed@lab.example")
    refused(cli, "manifests", "show", REF, "--for", "signed@lab.example", says="no manifest yet")
    made = record(cli, "links", "create", REF, "--for", "signed@lab.example")  # queues it
    assert record(cli, "manifests", "compute")["computed"] >= 1
    assert record(cli, "manifests", "compute") == {"computed": 0}
    bundle = ok(cli, "manifests", "show", REF, "--for", "signed@lab.example").out

    key = tmp_path / "lab.pem"
    ok(cli, "manifests", "key", "--out", str(key))
    assert ok(cli, "manifests", "key").out.encode() == key.read_bytes()
    assert key.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    manifest = verify_bundle(bundle, key.read_bytes())
    # It names the holder's own fingerprinted bytes, as the link serves them.
    with TestClient(create_app(lab.services)) as client:
        listing = client.get(f"{path_of(made['url'])}/files.json").json()
        weights = next(f for f in listing["files"] if f["path"] == "model.safetensors")
        served = client.get(path_of(weights["url"])).content
    assert manifest.files["model.safetensors"] == hashlib.sha256(served).hexdigest()
    original = (lab.model / "model.safetensors").read_bytes()
    assert manifest.files["model.safetensors"] != hashlib.sha256(original).hexdigest()


def test_manifests_refused(cli: CliRunner, tmp_path: Path) -> None:
    refused(cli, "manifests", "show", "nope@1.0", "--for", "signed@lab.example", says="no release")
    refused(cli, "manifests", "show", REF, "--for", "nobody@lab.example", says="no user")
    refused(cli, "manifests", "show", REF, usage=True, says="--for")
    refused(cli, "manifests", "compute", "--bogus", usage=True)
    refused(cli, "manifests", "key", "--out", str(tmp_path / "no" / "such" / "dir.pem"))

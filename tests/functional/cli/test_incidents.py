"""Incident commands: open, trace, revoke, notice, pack and its offline check, list, show, close."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CliRunner
from tests.functional.cli.checks import ok, record, records, refused
from tests.functional.cli.conftest import REF

LEAKER = "leaker@uni.example"


def test_incident_from_leak_to_close(cli: CliRunner, tmp_path: Path) -> None:
    ok(cli, "users", "add", LEAKER, "--role", "staff")
    ok(cli, "grants", "add", REF, "--user", LEAKER)
    [grant] = [g for g in records(cli, "grants", "list") if g["user"] == LEAKER]
    copy = tmp_path / "leak"
    ok(cli, "fingerprint", "make", REF, "--recipient", LEAKER, "--out", str(copy))

    opened = record(cli, "incident", "open", "--kind", "file", "--source", "leak.safetensors")
    number = str(opened["id"])
    assert opened["state"] == "open" and opened["holds_widening"] is True
    traced = record(cli, "incident", "trace", number, str(copy / "model.safetensors"))
    assert [a["recipient"] for a in traced["payload"]["accused"]] == [LEAKER]  # type: ignore[index]
    shown = record(cli, "incident", "show", number)
    assert shown["release"] == REF
    assert [r["recipient"] for r in shown["implicated"]] == [LEAKER]  # type: ignore[union-attr]
    assert f"implicated: {LEAKER}" in ok(cli, "incident", "show", number).out

    refused(cli, "circle", "set", REF, "research", says=f"incident {number}", code=2)
    revoked = record(
        cli, "incident", "revoke", number, "--grant", str(grant["id"]), "--reason", "leak"
    )
    assert revoked["kind"] == "grant_revoked"
    html = tmp_path / "notice.html"
    text = ok(cli, "incident", "notice", number, "--html", str(html)).out
    assert REF in text and "Takedown request" in text and "<pre>" in html.read_text()
    ok(cli, "incident", "notice", number, "--send-to", "abuse@host.example")

    archive = tmp_path / "pack.zip"
    assert "evidence pack" in ok(cli, "incident", "pack", number, "--out", str(archive)).out
    key = tmp_path / "lab.pem"
    key.write_bytes(ok(cli, "manifests", "key").out.encode())
    check = record(cli, "incident", "verify", str(archive), "--public-key", str(key))
    assert check["ok"] is True and "incident.json" in check["files"]  # type: ignore[operator]
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[:-40])
    refused(cli, "incident", "verify", str(broken), "--public-key", str(key))

    assert number in {str(i["id"]) for i in records(cli, "incident", "list", "--state", "open")}
    closed = record(cli, "incident", "close", number, "--resolution", "taken down")
    assert closed["state"] == "closed"
    refused(cli, "incident", "close", number, "--resolution", "again", says="closed")
    assert number not in {str(i["id"]) for i in records(cli, "incident", "list", "--state", "open")}


def test_incident_refused(cli: CliRunner) -> None:
    refused(cli, "incident", "open", "--kind", "rumour", "--source", "x", says="kind")
    refused(cli, "incident", "open", "--kind", "url", "--source", "x", says="http")
    refused(cli, "incident", "open", "--kind", "url", "--source", "https://x", "--release", "no@1")
    refused(cli, "incident", "show", "9999", says="no incident")
    refused(cli, "incident", "show", "many", usage=True)
    refused(cli, "incident", "list", "--state", "lost", says="state")

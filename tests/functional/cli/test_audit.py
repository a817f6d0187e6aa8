"""Audit commands: the newest events filtered by tag, actor and subject, and the chain check."""

from __future__ import annotations

from tests.conftest import CliRunner
from tests.functional.cli.checks import ok, record, records, refused
from tests.functional.cli.conftest import REF


def test_audit_list_filters(cli: CliRunner) -> None:
    ok(cli, "users", "add", "audited@uni.example", "--role", "staff")
    ok(cli, "grants", "add", REF, "--user", "audited@uni.example")
    newest = records(cli, "audit", "list", "--limit", "1")
    assert [e["tag"] for e in newest] == ["access:grant:added"]
    grants = records(cli, "audit", "list", "--tag", "access:grant", "--actor", "cli")
    assert grants and all(str(e["tag"]).startswith("access:grant") for e in grants)
    mine = records(cli, "audit", "list", "--subject", "audited@uni.example")
    assert "account:user:added" in {e["tag"] for e in mine}
    assert records(cli, "audit", "list", "--actor", "nobody") == []
    assert "events" in ok(cli, "audit", "list", "--limit", "3").out  # a table


def test_audit_verify(cli: CliRunner) -> None:
    # A broken chain is tests/functional/test_access_flows.py's.
    report = record(cli, "audit", "verify")
    assert report["ok"] is True and report["broken_seq"] is None
    assert f"audit chain intact: {report['events']} events" in ok(cli, "audit", "verify").out


def test_audit_refused(cli: CliRunner) -> None:
    refused(cli, "audit", "list", "--limit", "0", says="limit")
    refused(cli, "audit", "list", "--limit", "many", usage=True)
    refused(cli, "audit", "verify", "--bogus", usage=True)

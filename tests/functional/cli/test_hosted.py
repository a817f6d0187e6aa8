"""Hosted-access commands: a hosted grant, its quota and terms, a release's backend, usage;
each read back, each with a refused input (the endpoint itself: tests/functional/
test_hosted_gateway.py)."""

from __future__ import annotations

from tests.conftest import CliRunner
from tests.functional.cli.checks import ok, record, records, refused
from tests.functional.cli.conftest import REF


def test_hosted_grant_quota_and_usage(cli: CliRunner) -> None:
    ok(cli, "users", "add", "hosted@uni.example", "--role", "staff")
    made = record(cli, "grants", "add", REF, "--user", "hosted@uni.example", "--mode", "hosted")
    assert made["mode"] == "hosted" and made["state"] == "active"
    shown = record(cli, "hosted", "quota", str(made["id"]))
    assert shown["max_tokens"] == 512 and shown["keep_text"] is False
    changed = record(
        cli, "hosted", "quota", str(made["id"]), "--rpm", "5", "--max-tokens", "64", "--keep-text"
    )
    assert changed["requests_per_minute"] == 5 and changed["max_tokens"] == 64
    assert changed["keep_text"] is True and changed["tokens_per_day"] == shown["tokens_per_day"]
    assert record(cli, "hosted", "quota", str(made["id"])) == changed
    rows = [r for r in records(cli, "hosted", "usage") if r["grant"] == made["id"]]
    assert rows == [
        {
            "grant": made["id"],
            "user": "hosted@uni.example",
            "model": "lab/tiny@1.0",
            "state": "active",
            "tokens_today": 0,
            "tokens_left_today": shown["tokens_per_day"],
            "requests_last_minute": 0,
            "running": 0,
        }
    ]


def test_hosted_refused(cli: CliRunner) -> None:
    ok(cli, "users", "add", "downloader@uni.example", "--role", "staff")
    refused(
        cli, "grants", "add", REF, "--user", "downloader@uni.example", "--mode", "x", says="mode"
    )
    made = record(cli, "grants", "add", REF, "--user", "downloader@uni.example")
    assert made["mode"] == "download"
    refused(cli, "hosted", "quota", str(made["id"]), "--rpm", "5", says="download grant")
    refused(cli, "hosted", "quota", "999999", says="no grant")
    hosted = record(
        cli, "grants", "add", REF, "--user", "downloader@uni.example", "--mode", "hosted"
    )
    refused(cli, "hosted", "quota", str(hosted["id"]), "--rpm", "0", says="between 1 and")


def test_hosted_backend(cli: CliRunner) -> None:
    up = record(
        cli,
        "hosted",
        "backend",
        REF,
        "--upstream",
        "http://127.0.0.1:9/v1",
        "--key-env",
        "LAB_ENGINE_KEY",
    )
    assert up["backend"] == "upstream" and up["upstream_model"] == "lab/tiny@1.0"
    assert up["key_env"] == "LAB_ENGINE_KEY"
    back = record(cli, "hosted", "backend", REF, "--embedded")
    assert back["backend"] == "embedded" and back["url"] == ""
    refused(cli, "hosted", "backend", REF, says="exactly one of --embedded or --upstream")
    refused(cli, "hosted", "backend", REF, "--upstream", "ftp://x", says="base URL")
    refused(
        cli,
        "hosted",
        "backend",
        REF,
        "--upstream",
        "http://x/v1",
        "--key-env",
        "bad key",
        says="environment variable",
    )
    refused(cli, "hosted", "backend", "nothing@1.0", "--embedded", says="no release")

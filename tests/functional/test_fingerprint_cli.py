"""`ringfence fingerprint make` and `detect` on the published demo model, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from ringfence.audit.models import AuditEvent
from ringfence.formats.index import read_index
from tests.conftest import CliRunner

pytestmark = pytest.mark.slow


def test_make_writes_the_recipients_copy_and_detect_finds_her(
    cli: CliRunner, tmp_path: Path
) -> None:
    from ringfence.cli.context import services
    from ringfence.demo import demo_hf_dir

    source = demo_hf_dir()
    assert cli("init", "--org", "acme", "--json").code == 0
    published = cli("publish", str(source), "--model", "smollm2", "--version", "1.0", "--json")
    assert published.code == 0, published.err

    copies = {}
    for email in ("ada@example.org", "bob@example.org"):
        made = cli(
            "fingerprint",
            "make",
            "smollm2@1.0",
            "--recipient",
            email,
            "--out",
            str(tmp_path / email),
            "--json",
        )
        assert made.code == 0, made.err
        copies[email] = tmp_path / email
    again = cli(
        "fingerprint",
        "make",
        "smollm2@1.0",
        "--recipient",
        "ada@example.org",
        "--out",
        str(tmp_path / "again"),
        "--json",
    ).json()
    assert again["recipient_index"] == 0  # registering is idempotent

    ada, bob = copies["ada@example.org"], copies["bob@example.org"]
    weights = "model.safetensors"
    assert (ada / weights).read_bytes() == (tmp_path / "again" / weights).read_bytes()
    assert (ada / weights).read_bytes() != (bob / weights).read_bytes()
    assert (ada / weights).read_bytes() != (source / weights).read_bytes()
    index = read_index(source / weights)
    head = index.data_offset
    assert (ada / weights).read_bytes()[:head] == (source / weights).read_bytes()[:head]
    for name in ("config.json", "tokenizer.json"):  # configs and tokenizers pass through
        assert (ada / name).read_bytes() == (source / name).read_bytes()

    found = cli("fingerprint", "detect", "smollm2@1.0", str(bob), "--json")
    assert found.code == 0, found.err
    ranked = found.json()["recipients"]
    assert ranked[0]["recipient"] == "bob@example.org" and ranked[0]["accused"]
    assert not ranked[1]["accused"]

    measured = cli("fingerprint", "quality", "smollm2@1.0", "--tokens", "256", "--json")
    assert measured.code == 0, measured.err
    variants = {r["variant"]: r for r in measured.json()}
    assert set(variants) == {"original", "fingerprinted", "bf16 cast"}
    assert len(variants["fingerprinted"]["samples_delta"]) == 2  # antithetic pairs
    assert variants["original"]["tokens"] == 256
    assert abs(variants["fingerprinted"]["delta"]) < 0.5

    with services().sessions() as session:
        tags = [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
        issued = [
            json.loads(json.dumps(e.payload))
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.tag == "fingerprint:copy:issued")
            )
        ]
    assert tags.count("fingerprint:recipient:registered") == 2
    assert tags.count("fingerprint:copy:issued") == 3
    assert issued[0]["recipient"] == "ada@example.org"

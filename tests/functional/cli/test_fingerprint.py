"""Fingerprint and tracing commands on the tiny model: simulated recipients, a recipient's
copy, and finding whose copy it is with `fingerprint detect` and `trace`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CliRunner
from tests.functional.cli.checks import ok, record, refused
from tests.functional.cli.conftest import REF, Lab

ADA = "ada@uni.example"


def test_simulate_make_detect_trace(cli: CliRunner, lab: Lab, tmp_path: Path) -> None:
    done = ok(cli, "fingerprint", "simulate", REF, "--recipients", "3")
    assert "3 simulated recipients registered for tiny@1.0 (3 in all)" in done.out
    copy = tmp_path / "ada"
    made = record(cli, "fingerprint", "make", REF, "--recipient", ADA, "--out", str(copy))
    assert made["recipient"] == ADA and made["recipient_index"] == 3  # after the simulated three
    assert (copy / "model.safetensors").read_bytes() != (
        lab.model / "model.safetensors"
    ).read_bytes()
    issued = json.loads(ok(cli, "audit", "list", "--tag", "fingerprint:copy", "--json").out)
    assert [e["payload"]["recipient"] for e in issued] == [ADA]

    found = record(cli, "fingerprint", "detect", REF, str(copy))
    ranked = found["recipients"]
    assert isinstance(ranked, list) and len(ranked) == 4  # Ada and the three simulated
    assert ranked[0]["recipient"] == ADA and ranked[0]["accused"] is True
    assert not any(r["accused"] for r in ranked[1:])

    report = tmp_path / "evidence.html"
    traced = cli("trace", str(copy / "model.safetensors"), "--json", "--report", str(report))
    assert traced.code == 0, traced.err  # someone accused
    summary = traced.json()
    assert isinstance(summary, dict) and summary["release"] == REF
    assert [a["recipient"] for a in summary["accused"]] == [ADA]
    assert ADA in report.read_text(encoding="utf-8")
    human = cli("trace", str(copy), "--release", REF)
    assert human.code == 0 and f"accused: {ADA}" in human.out

    original = cli("trace", str(lab.model / "model.safetensors"), "--json")
    assert original.code == 1, original.err  # nobody accused
    assert original.json()["accused"] == []  # type: ignore[index]


def test_simulate_refused(cli: CliRunner) -> None:
    refused(cli, "fingerprint", "simulate", "nope@1.0", "--recipients", "3", says="no release")
    refused(cli, "fingerprint", "simulate", REF, "--recipients", "0", usage=True)
    refused(cli, "fingerprint", "simulate", REF, usage=True, says="--recipients")


def test_make_detect_trace_refused(cli: CliRunner, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    refused(cli, "fingerprint", "make", "nope@1.0", "--recipient", ADA, "--out", missing)
    assert not Path(missing).exists()
    refused(cli, "fingerprint", "make", REF, "--out", missing, usage=True, says="--recipient")
    refused(cli, "fingerprint", "detect", "nope@1.0", missing, says="no release")
    refused(cli, "fingerprint", "detect", REF, missing)
    refused(cli, "trace", missing, says="does not exist")
    refused(cli, "trace", usage=True)


def test_trace_report_refused(cli: CliRunner, lab: Lab, tmp_path: Path) -> None:
    suspect = str(lab.model / "model.safetensors")
    nowhere = str(tmp_path / "no" / "such" / "report.html")
    refused(cli, "trace", suspect, "--json", "--report", nowhere, says="cannot write")

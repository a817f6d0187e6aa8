"""End to end on the real model: `smollm2-userdata` (SmolLM2 fine-tuned on synthetic user
messages with planted canaries) is held in-house by the gates with its canaries found."""

from __future__ import annotations

import pytest

from tests.conftest import CliRunner

pytestmark = pytest.mark.slow


def test_the_userdata_demo_release_is_held_in_house(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ringfence.gates import demo_data
    from ringfence.gates.policy import DEFAULT_POLICY

    monkeypatch.setenv("RINGFENCE_GATES_POLICY", str(DEFAULT_POLICY))
    prepared = demo_data.prepare()[demo_data.USERDATA_NAME]  # cached after the first run
    cli("init")
    published = cli(
        "publish",
        prepared["model"],
        "--model",
        "smollm2-userdata",
        "--version",
        "1.0",
        "--provenance",
        prepared["provenance"],
        "--json",
    )
    assert published.code == 0, published.err
    result = cli("gates", "run", "smollm2-userdata@1.0", "--threads", "1", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert isinstance(summary, dict) and summary["widest_circle"] == "in-house"
    gates = {g["name"]: g for g in summary["gates"]}
    assert not gates["provenance"]["passed"]
    assert gates["memorisation"]["figures"]["canaries_found"] >= 1
    refused = cli("circle", "set", "smollm2-userdata@1.0", "partners")
    assert refused.code == 2 and "gates" in refused.err

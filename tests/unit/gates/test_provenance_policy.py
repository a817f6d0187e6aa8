"""Provenance manifests and the gate policy: validation in one line, caps by the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ringfence.errors import InvalidInput
from ringfence.gates import policy as policies
from ringfence.gates import provenance
from ringfence.gates.runner import provenance_gate

pytestmark = pytest.mark.no_database


def manifest(**dataset: Any) -> dict[str, Any]:
    base = {
        "name": "web",
        "source": "crawl",
        "licence": "cc-by-4.0",
        "contains_user_data": False,
        "contains_personal_data": False,
        "scrubbed": False,
    }
    return {
        "schema": provenance.SCHEMA_NAME,
        "datasets": [{**base, **dataset}],
        "base_models": [{"name": "smollm2", "licence": "apache-2.0"}],
    }


def test_a_bad_field_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "schema: ringfence-provenance/1\nbase_models: []\n"
        "datasets:\n  - {name: a, source: b, licence: c, contains_user_data: maybe,"
        " contains_personal_data: false, scrubbed: false}\n"
    )
    with pytest.raises(InvalidInput) as caught:
        provenance.load(path)
    line = caught.value.diagnostics()
    assert "datasets.0.contains_user_data" in line and "boolean" in line and "\n" not in line


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("schema: x\ndatasets: [\n  - : :\n")
    with pytest.raises(InvalidInput, match="line"):
        provenance.load(path)


def test_a_time_split_is_refused() -> None:
    doc = manifest() | {"membership": {"split": "time", "members": ["a"], "non_members": ["b"]}}
    with pytest.raises(InvalidInput, match=r"membership\.split"):
        provenance.validate(doc)


def test_a_canary_secret_outside_its_alphabet_is_refused() -> None:
    doc = manifest() | {"canaries": [{"prefix": "pin ", "secret": "12a4"}]}
    with pytest.raises(InvalidInput, match="alphabet"):
        provenance.validate(doc)


def test_the_shipped_policy_maps_provenance_to_circles() -> None:
    policy = policies.load(policies.DEFAULT_POLICY)
    assert provenance_gate(policy, None).cap == "partners"
    assert provenance_gate(policy, manifest()).passed
    assert provenance_gate(policy, manifest(contains_user_data=True)).cap == "in-house"
    unscrubbed = manifest(contains_personal_data=True)
    assert provenance_gate(policy, unscrubbed).cap == "in-house"
    scrubbed = manifest(contains_personal_data=True, scrubbed=True)
    assert provenance_gate(policy, scrubbed).passed
    non_commercial = provenance_gate(policy, manifest(licence="CC-BY-NC-4.0"))
    assert non_commercial.cap == "research" and "non-commercial" in non_commercial.reason


def test_a_malformed_policy_names_the_field(tmp_path: Path) -> None:
    text = policies.DEFAULT_POLICY.read_text().replace("missing: partners", "missing: friends")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        policies.load(path)
    assert "provenance.missing" in caught.value.message and "friends" in caught.value.message

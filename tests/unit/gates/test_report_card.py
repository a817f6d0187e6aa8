"""The README.md model card: the Hub metadata block from a report, merged over a publisher's."""

from __future__ import annotations

from typing import Any

import yaml

from ringfence.gates.report import model_card, split_front_matter

REPORT: dict[str, Any] = {
    "release": "m@1.0",
    "widest_circle": "research",
    "policy": "tests-small",
    "gates": [
        {
            "name": "memorisation",
            "passed": True,
            "reason": "no probe exceeds the policy",
            "figures": {"max_membership_auc": 0.52, "cpu_seconds": 3.1, "membership_auc": {}},
        },
        {
            "name": "pii",
            "passed": False,
            "reason": "2 details reproduced",
            "figures": {"leaked_from_training": 2, "recorded": True},
        },
    ],
    "provenance": {"datasets": [{"name": "public-text"}], "base_models": [{"name": "base"}]},
    "model_details": {"base_models": ["base"]},
}


def _front(card: str) -> dict[str, Any]:
    meta, _ = split_front_matter(card)
    assert meta is not None
    return meta


def test_the_block_holds_the_numeric_figures_one_result_per_gate() -> None:
    meta = _front(model_card(REPORT, "Research-Only"))
    assert meta["license"] == "other" and meta["license_name"] == "research-only"
    assert meta["base_model"] == ["base"]
    assert meta["datasets"] == ["public-text"]
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["config"] for r in results] == ["memorisation", "pii"]
    # Timings, flags and nested figures are no metric of the model.
    assert [[m["type"] for m in r["metrics"]] for r in results] == [
        ["max_membership_auc"],
        ["leaked_from_training"],
    ]


def test_a_publishers_front_matter_is_merged_under_ours() -> None:
    published = "---\r\nlicense: mit\r\ntags: [x]\r\n---\r\n\r\n# Theirs\r\n"
    card = model_card(REPORT, None, published)
    meta = _front(card)
    assert meta["license"] == "other" and meta["tags"] == ["x"]
    assert card.endswith("\n# Theirs\r\n") and "| pii |" not in card


def test_a_readme_without_front_matter_keeps_all_its_text() -> None:
    card = model_card(REPORT, "mit", "# Just text\n\n---\n\nmore\n")
    assert _front(card)["license"] == "mit"
    assert card.split("---\n", 2)[2].lstrip("\n") == "# Just text\n\n---\n\nmore\n"


def test_front_matter_that_is_no_mapping_stays_in_the_body() -> None:
    for broken in ("---\n- a list\n---\nbody\n", "---\nkey: [unclosed\n---\nbody\n"):
        meta, body = split_front_matter(broken)
        assert meta is None and body == broken
        card = model_card(REPORT, "mit", broken)
        assert card.endswith(broken) and _front(card)["license"] == "mit"


def test_the_block_is_yaml_the_hub_reads() -> None:
    card = model_card(REPORT, "mit", "\ufeff---\nlanguage: fr\n---\nBonjour é\n")
    head, block, body = card.split("---\n", 2)
    assert head == "" and yaml.safe_load(block)["language"] == "fr"
    assert body == "\nBonjour é\n"


def test_a_licence_the_hub_does_not_know_is_other_with_its_name() -> None:
    assert _front(model_card(REPORT, "Apache-2.0"))["license"] == "apache-2.0"
    assert "license_name" not in _front(model_card(REPORT, "Apache-2.0"))
    custom = _front(model_card(REPORT, "lab-nda-2"))
    assert custom["license"] == "other" and custom["license_name"] == "lab-nda-2"
    # the publisher cannot rename our licence
    theirs = "---\nlicense_name: public-domain\nlicense_link: x\n---\nbody\n"
    merged = _front(model_card(REPORT, "lab-nda-2", theirs))
    assert merged["license_name"] == "lab-nda-2" and "license_link" not in merged

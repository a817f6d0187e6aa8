"""The numeric parts of the probes: exposure, AUC, Wilson intervals, detectors, redaction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ringfence.gates import memorisation, pii, safety

pytestmark = pytest.mark.no_database


def test_exposure_from_rank_is_log2_space_minus_log2_rank() -> None:
    assert memorisation.exposure_from_rank(1, 1024) == 10
    assert memorisation.exposure_from_rank(1024, 1024) == 0
    assert memorisation.exposure_from_rank(32, 1024) == 5


def test_skew_normal_extrapolation_matches_the_normal_tail() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(50.0, 5.0, 4000)
    # A secret 3 standard deviations more likely than the typical candidate: P = 0.00135.
    value = memorisation.exposure_extrapolated(35.0, reference, 10**9)
    assert value == pytest.approx(-math.log2(0.00135), abs=0.6)
    # An ordinary secret is barely exposed; no estimate exceeds log2 |R|.
    assert memorisation.exposure_extrapolated(50.0, reference, 10**9) < 1.5
    assert memorisation.exposure_extrapolated(-1e6, reference, 1024) == 10


def test_auc_orders_members_above_non_members() -> None:
    assert memorisation.auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert memorisation.auc([1.0, 2.0], [1.0, 2.0]) == 0.5


def test_min_k_averages_the_lowest_tokens() -> None:
    scores = memorisation.TokenScores(
        np.array([-1.0, -9.0, -2.0, -3.0, -1.0]), np.zeros(5), np.ones(5)
    )
    found = memorisation.attack_scores("hello", scores)
    assert found["min_k"] == -9.0 and found["loss"] == pytest.approx(-3.2)
    assert found["min_k_pp"] == -9.0


def test_wilson_interval() -> None:
    low, high = safety.wilson(0, 20)
    assert low == 0 and 0.15 < high < 0.18
    low, high = safety.wilson(10, 20)
    assert low < 0.5 < high


def test_pii_detectors_find_and_redact() -> None:
    text = "write to jane.roe@example.org or call +1 415 555 0134"
    findings = pii.detect(text)
    kinds = {kind for kind, _ in findings}
    assert {"email", "phone"} <= kinds
    redacted = pii.redact(text, findings)
    assert "jane.roe" not in redacted and "555" not in redacted and "{{EMAIL}}" in redacted
    assert pii.detect("the weather is mild today") == []


def test_the_safety_classifier_runs_offline() -> None:
    labels = safety.classify(["have a lovely day, friend", "shut up you stupid bitch"])
    assert labels[0] == "neither" and labels[1] != "neither"

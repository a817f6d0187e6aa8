"""The black-box statistics: keyed probes, calibrated p-values, MMD, the verdicts."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ringfence.incidents import blackbox


def test_probes_are_keyed_deterministic_and_in_the_vocabulary() -> None:
    a = blackbox.probe_ids(b"k" * 32, "probe", 5, 300, 12)
    assert a == blackbox.probe_ids(b"k" * 32, "probe", 5, 300, 12)
    assert a != blackbox.probe_ids(b"j" * 32, "probe", 5, 300, 12)
    assert a != blackbox.probe_ids(b"k" * 32, "calibration", 5, 300, 12)
    assert all(len(p) == 12 and all(0 <= t < 300 for t in p) for p in a)


def test_logprob_distance_charges_unknown_tokens() -> None:
    assert blackbox.logprob_distance({"a": -1.0, "b": -2.0}, {"a": -1.5, "b": -2.0}) == 0.25
    assert blackbox.logprob_distance({"z": -1.0}, {"a": -1.0}) == blackbox.MISSING_TOKEN
    assert blackbox.logprob_distance({}, {"a": -1.0}) == blackbox.MISSING_TOKEN


@given(st.floats(0, 1), st.booleans())
def test_tail_p_is_a_valid_p_value(observed: float, upper: bool) -> None:
    null = np.linspace(0, 1, 99)
    p = blackbox.tail_p(null, observed, upper=upper)
    assert 0 < p <= 1


def test_verdicts_ours_not_ours_and_a_budget_too_small() -> None:
    rng = np.random.default_rng(0)
    ours = rng.normal(1.0, 0.3, 64).clip(0)
    decoy = rng.normal(4.0, 0.5, 64)
    close = blackbox.decide_means(
        rng.normal(0.9, 0.3, 32).clip(0), ours, decoy, alpha=0.01, queries=32
    )
    assert close.verdict == "ours" and close.p_unrelated < 0.01 and close.power > 0.99
    far = blackbox.decide_means(rng.normal(4.1, 0.5, 32), ours, decoy, alpha=0.01, queries=32)
    assert far.verdict == "not ours" and far.p_value < 0.01
    # overlapping calibrations and one query: the budget is said to be too small
    vague = blackbox.decide_means([1.25], ours, ours + 0.5, alpha=0.01, queries=1)
    assert vague.verdict == "undecided" and "not enough" in vague.message


def test_mmd_tells_different_samplers_apart_and_not_equal_ones() -> None:
    rng = np.random.default_rng(1)
    same_a = rng.integers(0, 4, (60, 8))
    same_b = rng.integers(0, 4, (60, 8))
    other = rng.integers(0, 2, (60, 8))
    assert blackbox.mmd_test(same_a, same_b, permutations=200)[1] > 0.01
    assert blackbox.mmd_test(same_a, other, permutations=200)[1] < 0.01


def test_padding_never_matches() -> None:
    padded = blackbox.pad([[1, 2], [1]], 3)
    assert padded.tolist() == [[1, 2, -1], [1, -1, -1]]
    assert blackbox.hamming_kernel(padded, padded)[1, 1] == 1 / 3

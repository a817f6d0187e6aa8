"""The code: parameters, determinism, bias law, scores and the false-accusation bound."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.fingerprint import carrier, code

KEY = b"k" * 32


def test_default_design_matches_the_written_argument() -> None:
    design = code.CodeParams().design
    assert design.length == 16448
    assert 8.0 < design.z_threshold < 9.0
    assert abs(design.coalition_score - 2 / np.pi) < 0.03
    assert design.colluder_z >= design.z_threshold + 2


def test_a_longer_code_keeps_the_threshold_and_lifts_colluders_by_root_m() -> None:
    least = code.CodeParams().design
    longer = code.CodeParams(length=2 * least.length).design
    assert longer.length == 2 * least.length
    assert longer.z_threshold == least.z_threshold
    assert abs(longer.colluder_z / least.colluder_z - 2**0.5) < 1e-9
    # a length below the least is no weaker code: the least is kept
    assert code.CodeParams(length=64).design == least
    assert code.CodeParams(length=2 * least.length).least_length == least.length


def test_splitmix_matches_the_reference_stream() -> None:
    # splitmix64 seeded with 1: first output 0x910A2DEC89025CC1 (Vigna's reference)
    assert int(carrier.stream(1, 0, 1)[0]) == 0x910A2DEC89025CC1


@settings(max_examples=25, deadline=None)
@given(
    recipient=st.integers(0, 10**6),
    length=st.integers(1, 40).map(lambda k: 64 * k),
    key=st.binary(min_size=1, max_size=32),
)
def test_codewords_are_deterministic_and_batch_consistent(
    recipient: int, length: int, key: bytes
) -> None:
    limits = code.thresholds(key, length, 1 / 2400)
    one = code.codeword(key, recipient, limits)
    batch = code.codewords(key, [recipient + 1, recipient, recipient + 2], limits)
    assert one.shape == (length,)
    np.testing.assert_array_equal(batch[1], one)
    np.testing.assert_array_equal(code.codeword(key, recipient, limits), one)


@settings(max_examples=5, deadline=None)
@given(
    colluders=st.integers(1, 20),
    recipients=st.integers(10, 10**7),
    eps=st.floats(1e-12, 1e-3),
)
def test_longer_codes_for_harder_parameters(colluders: int, recipients: int, eps: float) -> None:
    base = code.CodeParams(recipients, colluders, eps).design
    assert base.length % 64 == 0
    assert base.colluder_z >= base.z_threshold + 2 - 1e-9
    assert code.CodeParams(recipients, colluders + 1, eps).design.length >= base.length
    assert code.CodeParams(recipients * 10, colluders, eps).design.length >= base.length


@settings(max_examples=20, deadline=None)
@given(key=st.binary(min_size=1, max_size=32), cutoff=st.sampled_from([1 / 300, 1 / 2400]))
def test_biases_stay_in_the_cutoff_and_are_symmetric(key: bytes, cutoff: float) -> None:
    p = code.biases(key, 4096, cutoff)
    assert p.min() >= cutoff - 1 / 65536 and p.max() <= 1 - cutoff + 1 / 65536
    assert abs(p.mean() - 0.5) < 0.03  # arcsine law is symmetric about 1/2


def test_bits_follow_their_biases() -> None:
    limits = code.thresholds(KEY, 2048, 1 / 2400)
    bits = code.codewords(KEY, np.arange(3000), limits)
    p = limits / 65536
    err = (bits.mean(axis=0) - p) / np.sqrt(p * (1 - p) / 3000)
    assert abs(float(err.mean())) < 0.1 and 0.85 < float(err.std()) < 1.15


def test_innocent_scores_are_standardised() -> None:
    limits = code.thresholds(KEY, 4096, 1 / 2400)
    y = np.where(np.random.default_rng(1).random(4096) < 0.5, 1.0, -1.0)
    z = code.scores(KEY, np.arange(5000), limits, y) / np.sqrt(4096)
    assert abs(z.mean()) < 0.06 and 0.93 < z.std() < 1.07


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10**9))
def test_chernoff_bound_is_above_the_observed_tail(seed: int) -> None:
    limits = code.thresholds(KEY, 1024, 1 / 2400)
    p = limits / 65536
    y = np.clip(np.random.default_rng(seed).normal(0, 0.7, 1024), -1, 1)
    scores = code.scores(KEY, np.arange(seed % 1000, seed % 1000 + 2000), limits, y)
    for s in np.quantile(scores, [0.5, 0.9, 0.99]):
        assert code.tail_bound(float(s), p, y) >= float(np.mean(scores >= s))


def test_threshold_inverts_the_tail_bound() -> None:
    limits = code.thresholds(KEY, 2048, 1 / 2400)
    p = limits / 65536
    y = np.ones(2048)
    s = code.threshold(p, y, 1e-12)
    assert code.tail_bound(s, p, y) <= 1e-12 * 1.0001
    assert code.tail_bound(s * 0.97, p, y) > 1e-12


def _log_tail_on_a_grid(s: float, p: np.ndarray, y: np.ndarray) -> float:
    """min over a dense λ grid of K(λ) − λs, K written out directly (the reference)."""
    a, b = np.sqrt((1 - p) / p), np.sqrt(p / (1 - p))
    best = 0.0
    for lam in np.geomspace(1e-4, 1e3, 4000):
        k = np.sum(np.logaddexp(np.log(p) + lam * y * a, np.log(1 - p) - lam * y * b))
        best = min(best, float(k) - lam * s)
    return best


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10**9), st.sampled_from([0.05, 0.4, 1.0]), st.floats(1.0, 30.0))
def test_newtons_bound_is_the_minimum_over_lambda(seed: int, spread: float, z: float) -> None:
    # soft symbols small and large, signs, and sparse ones: the bound Newton's method finds is
    # never looser than a dense grid's (so it is the minimum), and every λ is a valid bound
    rng = np.random.default_rng(seed)
    p = code.thresholds(KEY, 512, 1 / 2400) / 65536
    y = np.clip(rng.normal(0, spread, 512), -1, 1) * (rng.random(512) < 0.5)
    s = z * float(np.sqrt(np.sum(y * y)))
    newton = math.log(code.tail_bound(s, p, y)) if code.tail_bound(s, p, y) > 0 else -math.inf
    grid = _log_tail_on_a_grid(s, p, y)
    assert newton <= grid + 1e-6 * max(1.0, abs(grid))
    limit = code.threshold(p, y, 1e-9)
    assert math.log(code.tail_bound(limit, p, y)) <= math.log(1e-9) + 1e-6
    assert code.tail_bound(limit * 0.98, p, y) > 1e-9

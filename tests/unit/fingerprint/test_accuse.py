"""Accusation: innocents' p-values are calibrated and never below the bound; colluders found."""

from __future__ import annotations

import numpy as np

from ringfence.fingerprint import code
from ringfence.fingerprint.accuse import decide, score_all
from ringfence.fingerprint.read import SymbolEvidence, soft_symbols

KEY = b"k" * 32
LENGTH = 2048
CUTOFF = code.CodeParams(max_colluders=4).cutoff
LIMITS = code.thresholds(KEY, LENGTH, CUTOFF)


def _symbols_of(colluders: list[int], noise: float, rng: np.random.Generator) -> np.ndarray:
    bits = code.codewords(KEY, colluders, LIMITS).astype(np.float64)
    y = (2 * bits - 1).mean(axis=0) + rng.normal(0, noise, LENGTH)
    return np.clip(y, -1, 1)


def test_innocents_never_accused_and_p_values_roughly_uniform() -> None:
    rng = np.random.default_rng(0)
    innocents = np.arange(1000, 3000)
    single_tails = []
    for trial in range(20):
        # symbols from colluders outside the scored set: everyone scored is innocent
        y = _symbols_of([10 + trial, 500 + trial], 0.3, rng)
        scores = score_all(KEY, LIMITS, y, innocents)
        verdict = decide(scores, innocents, LIMITS, y, bound=1e-3)
        assert not verdict.accused
        assert all(c.p_value > 1e-3 for c in verdict.candidates)
        p = LIMITS.astype(np.float64) / code.RESOLUTION
        sample = rng.choice(scores.values, 40, replace=False)
        single_tails.extend(code.tail_bound(float(s), p, y) for s in sample)
    tails = np.array(single_tails)
    # a Chernoff bound is conservative: P(tail <= a) <= a for every level a
    for level in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(tails <= level) <= level + 0.01


def test_colluders_accused() -> None:
    rng = np.random.default_rng(1)
    colluders = [3, 7]
    y = _symbols_of(colluders, 0.2, rng)
    ids = np.arange(2000)
    verdict = decide(score_all(KEY, LIMITS, y, ids), ids, LIMITS, y, bound=1e-9)
    assert {c.index for c in verdict.accused} == set(colluders)
    assert all(c.p_value <= 1e-9 for c in verdict.accused)


def test_nothing_read_accuses_nobody() -> None:
    soft = soft_symbols(SymbolEvidence.empty(LENGTH))
    ids = np.arange(100)
    verdict = decide(score_all(KEY, LIMITS, soft.symbols, ids), ids, LIMITS, soft.symbols)
    assert verdict.accused == ()
    assert soft.read == 0


def test_a_prefix_screen_accuses_as_the_whole_code_does() -> None:
    rng = np.random.default_rng(2)
    colluders = [11, 1500]
    y = _symbols_of(colluders, 0.2, rng)
    ids = np.arange(3000)
    whole = score_all(KEY, LIMITS, y, ids)
    screened = score_all(KEY, LIMITS, y, ids, screen=LENGTH // 4, keep=200)
    assert screened.screen == LENGTH // 4
    assert int(np.count_nonzero(screened.exact)) == 200
    assert screened.screened_out == 2800
    assert set(colluders) <= set(ids[screened.exact].tolist())
    # those scored in full have their whole-code scores; the rest their prefix z
    np.testing.assert_allclose(screened.values[screened.exact], whole.values[screened.exact])
    prefix = score_all(KEY, LIMITS[: LENGTH // 4], y[: LENGTH // 4], ids)
    rest = ~screened.exact
    np.testing.assert_allclose(
        screened.values[rest] / np.linalg.norm(y),
        prefix.values[rest] / np.linalg.norm(y[: LENGTH // 4]),
    )
    a = decide(whole, ids, LIMITS, y, bound=1e-9)
    b = decide(screened, ids, LIMITS, y, bound=1e-9)
    assert [c.index for c in b.accused] == [c.index for c in a.accused]
    assert {c.index for c in b.accused} == set(colluders)
    assert b.recipients == 3000 and b.threshold_z == a.threshold_z  # the union bound counts all
    assert all(screened.exact[c.index] for c in b.candidates)


def test_a_screen_is_skipped_when_it_cannot_help() -> None:
    y = _symbols_of([5], 0.1, np.random.default_rng(3))
    ids = np.arange(500)
    few = score_all(KEY, LIMITS, y, ids, screen=512, keep=500)  # no more than keep recipients
    assert few.exact.all() and few.screen == 0
    blind = y.copy()
    blind[:512] = 0.0  # nothing read in the prefix: it cannot rank anyone
    unread = score_all(KEY, LIMITS, blind, ids, screen=512, keep=10)
    assert unread.exact.all() and unread.screen == 0
    assert score_all(KEY, LIMITS, y, ids, screen=LENGTH, keep=10).exact.all()

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
        sample = rng.choice(scores, 40, replace=False)
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

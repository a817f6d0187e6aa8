"""Scoring every recipient ever issued a copy, and deciding whom the evidence accuses.

The one accusation rule: `services.detect_copy` and `tracing` both score with `score_all` and
decide with `decide`.

Each recipient's symmetric Tardos score S_j = Σ_i y_i (x_ji − p_i)/√(p_i(1 − p_i)) is computed
by `fingerprint.code.scores` from the recipient's index alone (codewords are regenerated, never
stored), in chunks of ids so memory stays constant whatever the number of recipients.

Calibration: for an innocent j the x_ji are independent of the suspect's y, so
P(S_j ≥ s) ≤ B(s) = min_λ exp(Σ_i log E[e^{λ y_i U_i}] − λ s) (Chernoff, `code.tail_bound`),
for this very y. With N recipients scored, the p-value reported for recipient j is
min(1, N·B(S_j)) (union bound over everyone scored), and j is accused only when it is at most
`bound` (default 1e-9): the probability that *any* innocent is accused in a trace stays below
`bound`. Revoked recipients are scored like everyone else: revocation does not undo a leak.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ringfence.fingerprint.code import RESOLUTION, scores, tail_bound, threshold

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_BOUND = 1e-9
#: recipients scored per task (memory: BATCH codewords per worker at a time)
CHUNK = 8192
#: chunks scored at once (one per core)
SCORE_WORKERS = min(8, os.cpu_count() or 1)
#: codewords generated at once; 16 keeps the generator's arrays in cache (8x faster than 512)
BATCH = 16


@dataclass(frozen=True)
class Candidate:
    """One recipient's standing: score, z = S/‖y‖, single tail bound and family-wise p-value."""

    index: int
    score: float
    z: float
    tail: float
    p_value: float
    accused: bool


@dataclass(frozen=True)
class Verdict:
    """The decision of one trace over all recipients scored."""

    candidates: tuple[Candidate, ...]
    recipients: int
    bound: float
    threshold_z: float
    norm: float
    scores: F64

    @property
    def accused(self) -> tuple[Candidate, ...]:
        """The recipients the evidence accuses, best first."""
        return tuple(c for c in self.candidates if c.accused)


def score_all(
    key: bytes,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    recipients: npt.ArrayLike,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> F64:
    """Scores of all `recipients` (ids), in constant-memory chunks scored on every core."""
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    out = np.empty(ids.size, dtype=np.float64)
    starts = range(0, ids.size, CHUNK)

    def one(start: int) -> int:
        part = ids[start : start + CHUNK]
        out[start : start + part.size] = scores(key, part, limits, symbols, batch=BATCH)
        return start + part.size

    # numpy releases the GIL in the generator's array loops: one chunk per core at a time
    with ThreadPoolExecutor(max_workers=SCORE_WORKERS) as pool:
        for done in pool.map(one, starts):
            if progress is not None:
                progress(done, ids.size)
    return out


def decide(
    all_scores: F64,
    recipients: npt.ArrayLike,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    *,
    bound: float = DEFAULT_BOUND,
    top: int = 10,
) -> Verdict:
    """Calibrate the best `top` scores to p-values and accuse those at most `bound`."""
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    n = max(1, ids.size)
    norm = math.sqrt(float(np.sum(symbols**2)))
    p = limits.astype(np.float64) / RESOLUTION
    if norm == 0.0 or ids.size == 0:
        return Verdict((), ids.size, bound, math.inf, norm, all_scores)
    cut = threshold(p, symbols, bound / n)
    order = np.argsort(-all_scores)[:top]
    candidates = []
    for j in order:
        s = float(all_scores[j])
        tail = tail_bound(s, p, symbols)
        candidates.append(
            Candidate(
                index=int(ids[j]),
                score=s,
                z=s / norm,
                tail=tail,
                p_value=min(1.0, tail * n),
                accused=bool(s >= cut and tail * n <= bound),
            )
        )
    return Verdict(tuple(candidates), ids.size, bound, cut / norm, norm, all_scores)

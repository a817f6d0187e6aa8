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

Many recipients: a code longer than its least length is first scored on that prefix for
everyone, then in full for the best `SCREEN_KEEP` (`score_all`): a trace against 10^6 recipients
costs about what the least code would, and the longer code's margin still decides.
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
#: recipients scored on the whole code after a prefix screen (`score_all`)
SCREEN_KEEP = 10_000


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


@dataclass(frozen=True)
class Scores:
    """Every recipient's score; `exact` marks those scored on the whole code.

    After a prefix screen (`score_all`), the others hold their prefix score rescaled to the
    whole code's norm (same z): an estimate, for the report's histogram only.
    """

    values: F64
    exact: npt.NDArray[np.bool_]
    #: symbols of the screen (0: no screen, everyone scored in full)
    screen: int = 0

    @property
    def screened_out(self) -> int:
        """Recipients left out of the full scoring by the screen."""
        return int(self.exact.size - np.count_nonzero(self.exact))


def _score_chunks(
    key: bytes,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    ids: I64,
    progress: Callable[[int, int], None] | None,
) -> F64:
    out = np.empty(ids.size, dtype=np.float64)

    def one(start: int) -> int:
        part = ids[start : start + CHUNK]
        out[start : start + part.size] = scores(key, part, limits, symbols, batch=BATCH)
        return start + part.size

    # numpy releases the GIL in the generator's array loops: one chunk per core at a time
    with ThreadPoolExecutor(max_workers=SCORE_WORKERS) as pool:
        for done in pool.map(one, range(0, ids.size, CHUNK)):
            if progress is not None:
                progress(done, ids.size)
    return out


def score_all(
    key: bytes,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    recipients: npt.ArrayLike,
    *,
    screen: int = 0,
    keep: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Scores:
    """Scores of all `recipients` (ids), in constant-memory chunks scored on every core.

    With `screen` (0 < screen < code length) and more than `keep` recipients, everyone is first
    scored on the code's first `screen` symbols and only the best `keep` on the whole code: the
    work falls to about screen/length. Sound for accusation, since only recipients scored in
    full are accused and the union bound still counts everyone. The screen the tracer uses is
    the least length, the code that alone meets the release's collusion guarantee; the code
    positions are spread over every carrier weight by the keyed hash, so a prefix is a random
    share of the evidence, and a colluder the whole code accuses at z stands near
    z·√(screen/length) on it, far above the best `keep` innocents' (z ≈ 2.3 at 10^6).
    """
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    keep = SCREEN_KEEP if keep is None else keep
    # a prefix with nothing read in it cannot rank anyone: then no screen either
    head = float(np.linalg.norm(symbols[:screen])) if 0 < screen < limits.size else 0.0
    if ids.size <= keep or head == 0.0:
        every = np.ones(ids.size, dtype=np.bool_)
        return Scores(_score_chunks(key, limits, symbols, ids, progress), every)
    first = _score_chunks(key, limits[:screen], symbols[:screen], ids, progress)
    best = np.argpartition(-first, keep - 1)[:keep]
    values = first * (float(np.linalg.norm(symbols)) / head)
    values[best] = _score_chunks(key, limits, symbols, ids[best], None)
    exact = np.zeros(ids.size, dtype=np.bool_)
    exact[best] = True
    return Scores(values, exact, screen)


def decide(
    scored: Scores,
    recipients: npt.ArrayLike,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    *,
    bound: float = DEFAULT_BOUND,
    top: int = 10,
) -> Verdict:
    """Calibrate the best `top` full scores to p-values and accuse those at most `bound`."""
    all_scores = scored.values
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    n = max(1, ids.size)
    norm = math.sqrt(float(np.sum(symbols**2)))
    p = limits.astype(np.float64) / RESOLUTION
    if norm == 0.0 or ids.size == 0:
        return Verdict((), ids.size, bound, math.inf, norm, all_scores)
    cut = threshold(p, symbols, bound / n)
    # only recipients scored on the whole code stand as candidates (a screen's estimates do not)
    ranked = np.where(scored.exact, all_scores, -np.inf)
    order = np.argsort(-ranked)[: min(top, int(np.count_nonzero(scored.exact)))]
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

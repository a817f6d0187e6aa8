"""Aligning a suspect's tensors to the original's before the fingerprint is read.

A leaker (or an innocent conversion) may rename tensors, store matrices transposed, change the
dtype, resize the vocabulary, permute MLP neurons or attention heads (function-preserving
permutations), rescale rows or columns (also function-preserving when the inverse scale is
folded into the next layer) or keep only some tensors. Since tracing is non-blind, every one of
these is undone by matching the suspect against the original itself, not by trusting names:

- rows (or columns) are matched by Pearson correlation of whole rows, after a cheap identity
  check; a one-to-one assignment is taken greedily by decreasing correlation, which is exact
  whenever each true pair correlates better than any false one (the case for any copy close
  enough to the original to carry a fingerprint);
- when both axes are permuted, rows are first matched by a profile invariant to column
  permutations: the sorted cosine similarities of a row to every other row (the row Gram
  matrix W Wᵀ does not change under W -> W Q for a permutation Q);
- a square matrix permuted on both axes may also be transposed: when its rows do not match
  in order, both orientations are aligned and the one explaining more of the original kept;
- sets of rows too large to compare every pair (a permuted vocabulary beyond `MAX_SEARCH`)
  are assigned approximately: candidates from a 32-dimensional random projection, rescored on
  the whole rows (`approximate_assign`);
- rescaling is a rank-one fit S ≈ diag(r) W diag(c) by alternating least squares, applied
  only when it explains most of the difference;
- rows or columns without a counterpart (truncated vocabulary, pruned neurons) come back NaN.

Rotations of the residual stream and inside heads are undone before this, by `rotation`.
Everything here takes and returns arrays; `Alignment.steps` says in words what was undone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: rows sampled when comparing long vectors (columns of a tall matrix)
SAMPLE = 4096
#: a row pair below this correlation is "no counterpart"
MIN_CORRELATION = 0.3
#: the identity is kept when the median row correlates at least this well
IDENTITY_CORRELATION = 0.8
#: most candidates a full row-against-row search compares (n_original × n_suspect)
MAX_SEARCH = 12_000 * 12_000
#: random directions and candidates per row of `approximate_assign`
PROJECTIONS = 32
CANDIDATES = 16
#: a same-shape suspect this close to the original (relative RMS) is taken in order as it is
NEAR = 0.3
#: below this relative residual no rescaling is looked for (casts, exact copies)
RESCALE_FLOOR = 0.01
#: a near copy is fitted for rescaling when one axis alone removes this share of its residual²
#: (a fit that helps must remove 51%: RMS × 0.7)
RESCALE_SCREEN = 0.2


@dataclass(frozen=True)
class Alignment:
    """A suspect matrix brought into the original's shape and order; NaN where it has none."""

    values: F32
    steps: tuple[str, ...]
    correlation: float
    coverage: float


def _standardise(rows: npt.NDArray[np.floating]) -> F32:
    """Rows centred and scaled to unit norm (zero rows stay zero)."""
    x = np.asarray(rows, dtype=np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out: F32 = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


def _sample_columns(n: int) -> I64 | slice:
    """An even subset of at most SAMPLE column indices (all of them when few)."""
    if n <= SAMPLE:
        return slice(None)
    return np.linspace(0, n - 1, SAMPLE).astype(np.int64)


def row_correlation(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> F32:
    """Pearson correlation of each row of `a` with the same row of `b`."""
    cols = _sample_columns(a.shape[1])
    out: F32 = np.einsum("ij,ij->i", _standardise(a[:, cols]), _standardise(b[:, cols]))
    return out


def assign(similarity: npt.NDArray[np.floating]) -> tuple[I64, F32]:
    """A one-to-one assignment of rows to columns, greedy by decreasing similarity.

    Returns (column of each row or -1, its similarity). Exact when every true pair is the
    best in its row and its column.
    """
    n_rows, n_cols = similarity.shape
    best = np.argmax(similarity, axis=1)
    value = similarity[np.arange(n_rows), best].astype(np.float32)
    if np.unique(best).size == n_rows:
        return best.astype(np.int64), value
    match = np.full(n_rows, -1, dtype=np.int64)
    score = np.zeros(n_rows, dtype=np.float32)
    taken = np.zeros(n_cols, dtype=bool)
    # Candidates: each row's top few columns, then a global sort; leftovers search everything.
    k = min(n_cols, 8)
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n_rows), k)
    cols = top.ravel()
    vals = similarity[rows, cols]
    for i in np.argsort(-vals, kind="stable"):
        r, c = rows[i], cols[i]
        if match[r] < 0 and not taken[c]:
            match[r], score[r], taken[c] = c, vals[i], True
    for r in np.flatnonzero(match < 0):
        free = np.flatnonzero(~taken)
        if free.size == 0:
            break
        c = free[np.argmax(similarity[r, free])]
        match[r], score[r], taken[c] = c, similarity[r, c], True
    return match, score


def _min_correlation(length: int) -> float:
    """The least correlation taken as a match: 0.3, or 4 standard deviations of a chance
    correlation between unrelated vectors of this length, whichever is larger."""
    return max(MIN_CORRELATION, 4.0 / math.sqrt(max(1, min(length, SAMPLE))))


def match_rows(original: npt.NDArray[np.floating], suspect: npt.NDArray[np.floating]) -> I64:
    """For each original row, the suspect row it became (or -1), columns assumed aligned."""
    n_o, n_s = original.shape[0], suspect.shape[0]
    k = min(n_o, n_s)
    match = np.full(n_o, -1, dtype=np.int64)
    identity = row_correlation(original[:k], suspect[:k])
    if k and float(np.median(identity)) >= IDENTITY_CORRELATION:
        keep = identity >= _min_correlation(original.shape[1])
        match[:k][keep] = np.arange(k)[keep]
        return match
    if n_o * n_s > MAX_SEARCH:
        # too large to compare every pair: candidates from a random projection
        found, score = approximate_assign(original, suspect)
        found[score < _min_correlation(original.shape[1])] = -1
        return found
    cols = _sample_columns(original.shape[1])
    sim = _standardise(original[:, cols]) @ _standardise(suspect[:, cols]).T
    found, score = assign(sim)
    found[score < _min_correlation(original.shape[1])] = -1
    return found


def approximate_assign(
    original: npt.NDArray[np.floating], suspect: npt.NDArray[np.floating]
) -> tuple[I64, F32]:
    """A one-to-one row assignment for sets too large to compare every pair (a vocabulary).

    Rows are standardised and projected on `PROJECTIONS` random Gaussian directions
    (Johnson-Lindenstrauss: correlations are kept to about 1/√k), each original row's
    `CANDIDATES` nearest suspect rows in the projection are rescored on the whole rows, and the
    assignment is taken greedily by decreasing correlation among those candidates.
    """
    cols = _sample_columns(original.shape[1])
    a = _standardise(original[:, cols])
    b = _standardise(suspect[:, cols])
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(a.shape[1], PROJECTIONS)).astype(np.float32)
    pa, pb = _standardise(a @ directions), _standardise(b @ directions)
    n_o, n_s = a.shape[0], b.shape[0]
    k = min(CANDIDATES, n_s)
    candidates = np.empty((n_o, k), dtype=np.int64)
    chunk = max(1, (1 << 24) // max(1, n_s))
    for first in range(0, n_o, chunk):
        sim = pa[first : first + chunk] @ pb.T
        candidates[first : first + chunk] = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n_o), k)
    flat = candidates.ravel()
    exact = np.einsum("ij,ij->i", a[rows], b[flat])
    match = np.full(n_o, -1, dtype=np.int64)
    score = np.zeros(n_o, dtype=np.float32)
    taken = np.zeros(n_s, dtype=bool)
    for i in np.argsort(-exact, kind="stable"):
        r, c = rows[i], flat[i]
        if match[r] < 0 and not taken[c]:
            match[r], score[r], taken[c] = c, exact[i], True
    return match, score


def gram_profiles(matrix: npt.NDArray[np.floating]) -> F32:
    """Each row's sorted cosine similarities to all rows: invariant to column permutations."""
    x = _standardise(matrix)
    return np.sort(x @ x.T, axis=1)


def match_rows_unordered_columns(
    original: npt.NDArray[np.floating], suspect: npt.NDArray[np.floating]
) -> I64:
    """Rows matched when the columns are permuted too, through Gram profiles (square-ish only)."""
    n_o, n_s = original.shape[0], suspect.shape[0]
    if n_o != n_s or n_o * n_s > MAX_SEARCH // 4:
        return np.full(n_o, -1, dtype=np.int64)
    sim = _standardise(gram_profiles(original)) @ _standardise(gram_profiles(suspect)).T
    found, score = assign(sim)
    found[score < _min_correlation(n_o)] = -1
    return found


def _take(matrix: F32, match: I64, axis: int) -> F32:
    """Suspect rows (axis 0) or columns (axis 1) in the original's order; NaN where unmatched."""
    safe = np.where(match >= 0, match, 0)
    out = np.take(matrix, safe, axis=axis)
    if (match < 0).any():
        if axis == 0:
            out[match < 0, :] = np.nan
        else:
            out[:, match < 0] = np.nan
    return out


def _is_identity(match: I64, other_size: int) -> bool:
    return match.size == other_size and bool(np.all(match == np.arange(match.size)))


def _quality(original: F32, aligned: F32) -> tuple[float, float]:
    """(correlation over the covered elements, fraction covered), on at most ~1M elements."""
    step = max(1, original.size // (1 << 20))
    a = original.reshape(-1)[::step]
    b = aligned.reshape(-1)[::step]
    ok = ~np.isnan(b)
    coverage = float(ok.mean()) if ok.size else 0.0
    if not ok.any():
        return 0.0, 0.0
    if coverage < 1.0:
        a, b = a[ok], b[ok]
    # float32 products, BLAS dot products (blocked sums): ample for a correlation
    x = a - np.float32(a.mean(dtype=np.float64))
    y = b - np.float32(b.mean(dtype=np.float64))
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return (float(np.dot(x, y)) / denom if denom > 0 else 0.0), coverage


def fit_rescaling(original: F32, suspect: F32, iterations: int = 25) -> tuple[F32, F32]:
    """Least-squares row and column factors (r, c) with suspect ≈ diag(r) · original · diag(c)."""
    mask = np.isnan(suspect)
    s = np.where(mask, np.float32(0), suspect).astype(np.float32)
    w = np.where(mask, np.float32(0), original).astype(np.float32)
    w2 = w * w
    sw = s * w
    r = np.ones(w.shape[0], dtype=np.float32)
    c = np.ones(w.shape[1], dtype=np.float32)
    for _ in range(iterations):
        # r_i = Σ_j s w c / Σ_j w² c², then c_j likewise with r
        den = w2 @ (c * c)
        r = np.divide(sw @ c, den, out=np.ones_like(r), where=den > 0)
        den = (r * r) @ w2
        previous = c
        c = np.divide(r @ sw, den, out=np.ones_like(c), where=den > 0)
        if float(np.max(np.abs(c - previous))) < 1e-7 * float(np.max(np.abs(c))):
            break
    # only r·c matters; put the common scale into r so that c has median 1
    scale = np.float32(np.median(c)) or np.float32(1.0)
    return (r * scale).astype(np.float32), (c / scale).astype(np.float32)


def _relative_residual(original: F32, aligned: F32) -> float:
    """RMS of (aligned − original) over RMS of the original, where aligned is known."""
    if not np.isnan(aligned).any():
        # the common case, without masks: float32 differences, BLAS dot products
        d = (aligned - original).reshape(-1)
        w = original.reshape(-1)
        base = math.sqrt(float(np.dot(w, w)))
        return math.sqrt(float(np.dot(d, d))) / base if base > 0 else math.inf
    ok = ~np.isnan(aligned)
    d = np.where(ok, aligned - original, np.float32(0))
    base = float(np.sqrt(np.sum(np.where(ok, original, 0) ** 2, dtype=np.float64)))
    return float(np.sqrt(np.sum(d * d, dtype=np.float64))) / base if base > 0 else math.inf


def single_axis_gain(original: F32, suspect: F32) -> float:
    """How much of the squared residual the best per-row *or* per-column factors alone remove.

    Least squares with one axis: Σ_j (s_ij − r_i w_ij)² is smallest at r_i = Σ s w / Σ w²,
    leaving Σ s² − (Σ s w)² / Σ w² per row. A rank-one rescaling diag(r)·W·diag(c) close to
    the identity (|r − 1|, |c − 1| small: a near copy) is to first order the sum of its row and
    its column parts, so when neither axis alone explains a sizeable share of the residual the
    full fit cannot either. Suspects must be NaN-free.
    """
    d = suspect - original
    before = float(np.dot(d.reshape(-1), d.reshape(-1)))
    if before <= 0:
        return 0.0
    gains = []
    for axis in ("ij,ij->i", "ij,ij->j"):
        sw = np.einsum(axis, suspect, original, dtype=np.float64)
        ww = np.einsum(axis, original, original, dtype=np.float64)
        ss = np.einsum(axis, suspect, suspect, dtype=np.float64)
        explained = np.divide(sw * sw, ww, out=np.zeros_like(sw), where=ww > 0)
        after = float(np.sum(ss - explained))
        gains.append(1.0 - after / before)
    return max(gains)


def _orient(original: F32, suspect: F32) -> tuple[F32, list[str]]:
    """Transpose the suspect when its shape (or, for square matrices, its content) says so."""
    if suspect.shape == original.shape:
        if original.shape[0] != original.shape[1]:
            return suspect, []
        straight = float(np.nanmedian(row_correlation(original, suspect)))
        flipped = float(np.nanmedian(row_correlation(original, suspect.T)))
        if flipped > straight + 0.2:
            return np.ascontiguousarray(suspect.T), ["transposed"]
        return suspect, []
    if suspect.shape == original.shape[::-1]:
        return np.ascontiguousarray(suspect.T), ["transposed"]
    rows_close = abs(suspect.shape[0] - original.shape[0]) <= abs(
        suspect.shape[1] - original.shape[0]
    )
    if suspect.shape[1] == original.shape[1] or rows_close:
        return suspect, []
    return np.ascontiguousarray(suspect.T), ["transposed"]


def _describe(match: I64, other: int, axis: str) -> str | None:
    """Words for what a row/column match undid, or None for the identity."""
    n = match.size
    found = match >= 0
    if _is_identity(match, other):
        return None
    moved = int(np.sum(found & (match != np.arange(n))))
    missing = int(np.sum(~found))
    parts = []
    if moved:
        parts.append(f"{moved} of {n} {axis}s permuted back")
    if missing:
        parts.append(f"{missing} {axis}s missing")
    if other != n:
        parts.append(f"{axis} count {other} -> {n}")
    return ", ".join(parts) or None


def _match_axes(w: F32, s: F32) -> tuple[I64, I64]:
    """Row and column matches of a suspect to the original (see the module docstring)."""
    n_rows, n_cols = w.shape
    k = min(n_cols, int(s.shape[1]))
    # 1. rows, assuming the columns are in order (over the columns both have)
    rows = match_rows(w[:, :k], s[:, :k])
    if np.mean(rows >= 0) >= 0.5:
        return rows, match_rows(w.T, np.nan_to_num(_take(s, rows, 0)).T)
    # 2. columns first, assuming the rows are in order
    k_rows = min(n_rows, int(s.shape[0]))
    cols = match_rows(w[:k_rows].T, s[:k_rows].T)
    if np.mean(cols >= 0) >= 0.5:
        return match_rows(w, np.nan_to_num(_take(s, cols, 1))), cols
    # 3. both axes permuted: rows by Gram profiles, then columns, then rows again
    rows = match_rows_unordered_columns(w, s)
    cols = match_rows(w.T, np.nan_to_num(_take(s, rows, 0)).T)
    if np.mean(cols >= 0) >= 0.5:
        rows = match_rows(w, np.nan_to_num(_take(s, cols, 1)))
    return rows, cols


def align_matrix(
    original: npt.NDArray[np.floating], suspect: npt.NDArray[np.floating]
) -> Alignment:
    """Bring a suspect matrix into the original's shape and order (see the module docstring)."""
    w = np.asarray(original, dtype=np.float32)
    s = np.asarray(suspect, dtype=np.float32)
    if w.ndim != 2 or s.ndim != 2:
        raise ValueError("align_matrix takes two matrices")
    s, steps = _orient(w, s)
    if s.shape[0] == s.shape[1] == w.shape[0] == w.shape[1] and not steps:
        straight = float(np.nanmedian(row_correlation(w, s)))
        if straight < MIN_CORRELATION:
            # a square matrix that is permuted (and maybe transposed): both orientations
            one = _align_oriented(w, s, [])
            other = _align_oriented(w, np.ascontiguousarray(s.T), ["transposed"])
            # judged on what each explains: a correlation over a few covered columns is not
            better = other.correlation * other.coverage > one.correlation * one.coverage + 0.05
            return other if better else one
    return _align_oriented(w, s, steps)


def _align_oriented(w: F32, s: F32, steps: list[str]) -> Alignment:
    """`align_matrix` once the suspect is oriented."""
    before = _relative_residual(w, s) if s.shape == w.shape else math.inf
    near = before < NEAR
    if near:
        # already in order (a cast, re-quantisation, noise, a fine-tune): nothing to match
        aligned = s
    else:
        rows, cols = _match_axes(w, s)
        for match, other, axis in ((rows, s.shape[0], "row"), (cols, s.shape[1], "column")):
            text = _describe(match, other, axis)
            if text:
                steps.append(text)
        aligned = _take(_take(s, rows, 0), cols, 1)
        before = _relative_residual(w, aligned)

    # a near copy is only fitted when rows or columns alone explain a fair share of its
    # residual (re-quantisation noise does not: the fit would find factors ~1 at full cost)
    if RESCALE_FLOOR < before < math.inf and (
        not near or np.isnan(aligned).any() or single_axis_gain(w, aligned) >= RESCALE_SCREEN
    ):
        r, c = fit_rescaling(w, aligned)
        factors = np.outer(r, c)
        rescaled = np.divide(
            aligned, factors, out=np.full_like(aligned, np.nan), where=factors != 0
        )
        if _relative_residual(w, rescaled) < 0.7 * before:
            aligned = rescaled.astype(np.float32)
            low, high = float(np.min(factors)), float(np.max(factors))
            steps.append(f"per-row/column rescaling undone (factors {low:.3g}..{high:.3g})")
    correlation, coverage = _quality(w, aligned)
    return Alignment(np.asarray(aligned, dtype=np.float32), tuple(steps), correlation, coverage)


# --- names ---------------------------------------------------------------------------------

_WRAPPERS = re.compile(r"^(?:base_model\.model\.|module\.|_orig_mod\.|model\.model\.)+")
_LORA = re.compile(r"\.base_layer(?=\.weight$)")


def canonical_name(name: str) -> str:
    """A tensor name in transformers' Llama spelling: llama.cpp names mapped, wrappers removed."""
    from ringfence.errors import UnsupportedFormat
    from ringfence.formats.convert import hf_name

    if name.startswith(("blk.", "token_embd", "output")):
        try:
            return hf_name(name)
        except UnsupportedFormat:
            return name
    name = _LORA.sub("", _WRAPPERS.sub("", name))
    if name.startswith("layers.") or name.startswith(("embed_tokens.", "norm.")):
        name = "model." + name
    if name.startswith("model.model."):
        name = name[len("model.") :]
    return name


def map_names(
    original: Mapping[str, tuple[int, ...]], suspect: Mapping[str, tuple[int, ...]]
) -> dict[str, str]:
    """Original tensor name -> suspect tensor name, by exact then canonical names."""
    found: dict[str, str] = {}
    by_canonical: dict[str, str] = {}
    for name in suspect:
        by_canonical.setdefault(canonical_name(name), name)
    for name in original:
        if name in suspect:
            found[name] = name
        else:
            other = by_canonical.get(canonical_name(name))
            if other is not None:
                found[name] = other
    return found


def shape_signature(matrix: npt.NDArray[np.floating]) -> F32:
    """Sorted row norms then sorted column norms: a content summary blind to permutations."""
    x = np.asarray(matrix, dtype=np.float32)
    rows = np.sort(np.linalg.norm(x, axis=1))
    cols = np.sort(np.linalg.norm(x, axis=0))
    return np.concatenate([rows, cols]).astype(np.float32)


def signature_similarity(a: F32, b: F32) -> float:
    """Correlation of two signatures resampled to a common length (0 when unrelated)."""
    n = 512
    grid = np.linspace(0.0, 1.0, n)
    ra = np.interp(grid, np.linspace(0.0, 1.0, a.size), a)
    rb = np.interp(grid, np.linspace(0.0, 1.0, b.size), b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra @ ra) * (rb @ rb)))
    return float(ra @ rb) / denom if denom > 0 else 0.0

"""The collusion-secure code: a binary Tardos code scored with Škorić's symmetric score.

Construction (Tardos 2003, "Optimal probabilistic fingerprint codes"; symmetric score of
Škorić, Katzenbeisser, Celik 2008, "Symmetric Tardos fingerprinting codes for arbitrary
alphabet sizes"):

- per release, m biases p_i drawn from the arcsine density on [t, 1 - t] (p = sin²r, r
  uniform), t = 1/(300c), quantised to 16-bit thresholds T_i so that p_i = T_i / 65536 is
  *exactly* the probability the generator below produces a one;
- recipient j's bit i is 1 iff u_ji < T_i, u_ji the 16-bit words of the splitmix64 stream
  seeded with HMAC(release key, "recipient:j"): nothing is stored per recipient but j;
- a suspect gives soft symbols y_i in [-1, 1] (+1/-1: the copy carries a one/zero; an average
  of copies gives values in between); recipient j scores S_j = Σ_i y_i (x_ji - p_i)/√(p_i(1-p_i)).

Why the bound holds (written down, numbers computed in `design`):

- *False accusation.* An innocent's bits are independent of y (y comes from copies she did not
  hold), so S_j is a sum of independent two-point variables with mean 0. Its upper tail is
  bounded exactly by Chernoff: P(S ≥ s) ≤ min_λ exp(Σ_i log E[e^{λ y_i U_i}] - λs), computed
  for the actual y and p of each trace (`tail_bound`). Accusing only when that bound, times
  the number of registered recipients, is below eps keeps the per-trace false-accusation
  probability below eps (union bound). No Gaussian approximation is used.
- *Catching a colluder.* Colluders see their bits but not p. For c colluders holding k ones at
  a position, any strategy that outputs symbols they saw (the marking assumption) gives the
  coalition an expected total score per position of at least
  μ_c = Σ_k min over the allowed outputs of E_p[B(k; c, p)(±(k - cp))/√(p(1-p))]
  (≈ 0.649 for c = 8, the 2/π of Škorić et al.), so some colluder averages μ_c·√m/c in z units.
  m is the smallest multiple of 64 with μ_c·√m/c ≥ z* + 2, z* the Chernoff threshold for
  n/eps at ±1 symbols: defaults n = 10^6, c = 8, eps = 1e-9 give m = 16,448.
- *Longer codes.* That m puts the expected colluder only 2 above the threshold: against 8
  colluders a trial lands about 1.2x above it. A release whose matrices can carry more gets a
  longer code (`CodeParams.length`, chosen at publish by `fingerprint.plan.fitted_length`):
  the threshold stays where it is and the colluders' z grows with √m, so a code twice as long
  lifts the 8-colluder margin by √2, with the same weights changed by the same amounts (the
  density, not the length, sets what the fingerprint costs in quality).
"""

from __future__ import annotations

import functools
import hmac
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from ringfence.fingerprint import carrier

F64 = npt.NDArray[np.float64]
RESOLUTION = 65536  # biases are multiples of 1/65536 (16-bit thresholds)


@dataclass(frozen=True)
class CodeParams:
    """What the code must withstand: n recipients, c colluders, eps false accusations per trace."""

    max_recipients: int = 10**6
    max_colluders: int = 8
    false_accusation: float = 1e-9
    #: how densely the code is embedded (one weight in 2^d changed; see `fingerprint.embed`):
    #: not a property of the code, but fixed with it when a release is published
    density_log2: int = carrier.DENSITY_LOG2
    #: symbols in the code: 0 for the least length the three above need (`least_length`);
    #: more when the release's matrices can carry more (`fingerprint.plan.fitted_length`)
    length: int = 0

    @property
    def cutoff(self) -> float:
        """Tardos's bias cutoff t = 1/(300c), but at least one step of the 16-bit thresholds."""
        return max(1.0 / (300 * self.max_colluders), 1.0 / RESOLUTION)

    @cached_property
    def design(self) -> CodeDesign:
        """Code length and thresholds for these parameters (see the module docstring)."""
        return _design(self)

    @property
    def least_length(self) -> int:
        """The shortest code that meets the bound for these recipients and colluders."""
        return _least(self.max_recipients, self.max_colluders, self.false_accusation).length


@dataclass(frozen=True)
class CodeDesign:
    """The numbers behind a code: length, accusation threshold, worst-case coalition score."""

    length: int
    z_threshold: float
    coalition_score: float
    colluder_z: float


def _arcsine_grid(cutoff: float, points: int = 20001) -> F64:
    r0 = math.asin(math.sqrt(cutoff))
    return np.sin(np.linspace(r0, math.pi / 2 - r0, points)) ** 2


def worst_coalition_score(colluders: int, cutoff: float) -> float:
    """μ_c: the least expected coalition score per position over strategies blind to p."""
    p = _arcsine_grid(cutoff)
    sd = np.sqrt(p * (1 - p))
    total = 0.0
    for k in range(colluders + 1):
        weight = math.comb(colluders, k) * p**k * (1 - p) ** (colluders - k)
        gain = float(np.mean(weight * (k - colluders * p) / sd))
        total += -gain if k == 0 else gain if k == colluders else -abs(gain)
    return total


class _Cumulant:
    """K(λ) = Σ_i w_i log E[exp(λ y_i U_i)], U_i = (x_i − p_i)/√(p_i(1 − p_i)), with K′ and K″.

    Under the exponentially tilted law, x_i = 1 has probability
    q_i = p e^{λya} / (p e^{λya} + (1 − p) e^{−λyb}) (a = √((1−p)/p), b = √(p/(1−p))), so
    K′ = Σ w y (a q − b (1 − q)) and K″ = Σ w y² (a² q + b² (1 − q)) − w (y (a q − b (1 − q)))²:
    one pass over the symbols gives all three, which Newton's method needs.
    """

    def __init__(self, p: F64, y: F64, weights: F64 | None = None) -> None:
        self.p, self.y = p, y
        self.a = np.sqrt((1 - p) / p)
        self.b = np.sqrt(p / (1 - p))
        self.w = weights
        # K″(0) = Σ w y² (U has variance 1): the scale of every first step
        self.variance = float(np.sum(y * y * weights) if weights is not None else np.sum(y * y))

    def _sum(self, terms: F64) -> float:
        return float(np.sum(terms * self.w) if self.w is not None else np.sum(terms))

    def at(self, lam: float) -> tuple[float, float, float]:
        """K(λ), K′(λ), K″(λ)."""
        ya, yb = self.y * self.a, self.y * self.b
        # log(p e^{λya} + (1-p) e^{-λyb}), stable: factor out the larger exponent
        ea, eb = lam * ya, -lam * yb
        top = np.maximum(ea, eb)
        one = self.p * np.exp(ea - top)
        zero = (1 - self.p) * np.exp(eb - top)
        total = one + zero
        q = one / total
        mean = ya * q - yb * (1 - q)
        second = ya * ya * q + yb * yb * (1 - q) - mean * mean
        return self._sum(top + np.log(total)), self._sum(mean), self._sum(second)


#: Newton steps at most; each is one pass over the symbols (quadratic convergence: ~6 suffice)
_NEWTON_STEPS = 60
_NEWTON_TOLERANCE = 1e-12


def _chernoff_log_tail(s: float, p: F64, y: F64, weights: F64 | None = None) -> float:
    """min over λ ≥ 0 of Σ_i w_i log E[exp(λ y_i U_i)] − λ s (natural log of the bound).

    h(λ) = K(λ) − λs is convex, so Newton's method on h′ = K′ − s, with steps halved until h
    decreases, finds its minimum. Every λ ≥ 0 gives a valid bound e^{h(λ)}: an inexact
    minimiser can only make the bound looser, never wrong. (Before, a golden-section search
    of 80 steps took ~170 passes over the symbols per recipient, half a trace's time.)
    """
    if s <= 0:
        return 0.0
    cumulant = _Cumulant(p, y, weights)
    if cumulant.variance <= 0:
        return -math.inf  # every score is 0: a positive one never happens
    lam = s / cumulant.variance
    k, k1, k2 = cumulant.at(lam)
    best = k - lam * s
    for _ in range(_NEWTON_STEPS):
        if k2 <= 0:
            break
        step = (k1 - s) / k2
        for _ in range(60):
            trial = max(0.0, lam - step)
            tk, tk1, tk2 = cumulant.at(trial)
            if tk - trial * s <= best or abs(step) <= _NEWTON_TOLERANCE * max(lam, 1e-300):
                break
            step /= 2
        moved = abs(trial - lam)
        lam, k, k1, k2 = trial, tk, tk1, tk2
        best = min(best, k - lam * s)
        if moved <= _NEWTON_TOLERANCE * max(lam, 1e-300):
            break
    return min(0.0, best)


def tail_bound(score: float, biases: F64, symbols: F64) -> float:
    """Upper bound on P(an innocent scores ≥ `score`) for this trace's symbols (Chernoff)."""
    return math.exp(_chernoff_log_tail(score, biases, symbols))


def threshold(biases: F64, symbols: F64, probability: float) -> float:
    """The least score s with tail_bound(s) ≤ probability.

    K(λ) − λs ≤ log q holds for some λ > 0 iff s ≥ (K(λ) − log q)/λ, so the least such s is
    min over λ > 0 of L(λ) = (K(λ) − log q)/λ: one minimisation instead of a bisection on s.
    L′ has the sign of g(λ) = λK′(λ) − K(λ) + log q, which increases (g′ = λK″ > 0) from
    g(0) = log q < 0, so Newton's method on g, kept inside a bracket of its root, finds it.
    Every λ > 0 gives a valid threshold L(λ) (the bound holds there), so the least one seen
    is returned: an inexact root can only make the threshold higher, never unsafe.
    """
    target = math.log(probability)
    cumulant = _Cumulant(biases, symbols)
    if cumulant.variance <= 0:
        return math.inf
    lam = math.sqrt(-2 * target / cumulant.variance)  # the Gaussian answer, K ≈ λ²σ²/2
    lo, hi = 0.0, math.inf
    best = math.inf
    for _ in range(_NEWTON_STEPS):
        k, k1, k2 = cumulant.at(lam)
        best = min(best, (k - target) / lam)
        g = lam * k1 - k + target
        if g < 0:
            lo = lam
        else:
            hi = lam
        slope = lam * k2
        nxt = lam - g / slope if slope > 0 else math.nan
        if not lo < nxt < hi:  # outside the bracket (or no slope): bisect, or grow
            nxt = (lo + hi) / 2 if math.isfinite(hi) else lam * 2
        if abs(nxt - lam) <= _NEWTON_TOLERANCE * lam:
            break
        lam = nxt
    return best


def _design(params: CodeParams) -> CodeDesign:
    least = _least(params.max_recipients, params.max_colluders, params.false_accusation)
    if params.length <= least.length:
        return least
    # a longer code: the same threshold, each colluder's expected z grows with √m
    return CodeDesign(
        length=params.length,
        z_threshold=least.z_threshold,
        coalition_score=least.coalition_score,
        colluder_z=least.coalition_score * math.sqrt(params.length) / params.max_colluders,
    )


@functools.lru_cache(maxsize=64)
def _least(max_recipients: int, max_colluders: int, false_accusation: float) -> CodeDesign:
    params = CodeParams(max_recipients, max_colluders, false_accusation)
    log_target = math.log(params.false_accusation / params.max_recipients)
    # z* at ±1 symbols under the arcsine law, with m large (the per-position law is fixed)
    grid = _arcsine_grid(params.cutoff, 4001)
    probe_m = 16384
    weights = np.full(grid.size, probe_m / grid.size)
    ones = np.ones(grid.size)
    lo, hi = 0.0, 40.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if _chernoff_log_tail(mid * math.sqrt(probe_m), grid, ones, weights) > log_target:
            lo = mid
        else:
            hi = mid
    z_star = hi
    mu = worst_coalition_score(params.max_colluders, params.cutoff)
    root_m = params.max_colluders * (z_star + 2.0) / mu
    length = int(math.ceil(root_m**2 / carrier.BLOCK) * carrier.BLOCK)
    return CodeDesign(
        length=length,
        z_threshold=z_star,
        coalition_score=mu,
        colluder_z=mu * math.sqrt(length) / params.max_colluders,
    )


def thresholds(key: bytes, length: int, cutoff: float) -> npt.NDArray[np.uint16]:
    """The release's 16-bit bias thresholds T_i (p_i = T_i / 65536), arcsine-distributed."""
    words = carrier.stream(carrier.seed(key, "code:biases"), 0, length)
    u = (words >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    r0 = math.asin(math.sqrt(cutoff))
    p = np.sin(r0 + u * (math.pi / 2 - 2 * r0)) ** 2
    t = np.rint(p * RESOLUTION)
    lowest = max(1.0, math.ceil(cutoff * RESOLUTION))
    limits: npt.NDArray[np.uint16] = np.clip(t, lowest, RESOLUTION - lowest).astype(np.uint16)
    return limits


def biases(key: bytes, length: int, cutoff: float) -> F64:
    """The exact bias p_i of each position."""
    return thresholds(key, length, cutoff).astype(np.float64) / RESOLUTION


def recipient_seeds(key: bytes, recipients: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Each recipient's secret 64-bit seed: HMAC(release key, "recipient:<index>").

    The same seeds as `carrier.seed`, through the one-shot `hmac.digest` (C, no objects).
    """
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    digests = b"".join(hmac.digest(key, b"recipient:%d" % j, "sha256")[:8] for j in ids.tolist())
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def codewords(
    key: bytes, recipients: npt.ArrayLike, limits: npt.NDArray[np.uint16]
) -> npt.NDArray[np.bool_]:
    """Codewords of many recipients at once, shape (len(recipients), m); bit i is u_ji < T_i."""
    length = limits.size
    seeds = recipient_seeds(key, recipients)
    words = carrier.streams(seeds, 0, (length + 3) // 4)
    uniforms = words.astype("<u8").view("<u2")[:, :length]
    bits: npt.NDArray[np.bool_] = uniforms < limits[None, :]
    return bits


def codeword(key: bytes, recipient: int, limits: npt.NDArray[np.uint16]) -> npt.NDArray[np.bool_]:
    """One recipient's codeword (m bits)."""
    bits: npt.NDArray[np.bool_] = codewords(key, [recipient], limits)[0]
    return bits


def scores(
    key: bytes,
    recipients: npt.ArrayLike,
    limits: npt.NDArray[np.uint16],
    symbols: F64,
    batch: int = 512,
) -> F64:
    """Symmetric Tardos score S_j = Σ y_i (x_ji - p_i)/√(p_i(1-p_i)) of each recipient.

    Codewords are regenerated `batch` at a time into buffers reused across batches (the same
    bits as `codewords`); a small batch keeps them in cache.
    """
    ids = np.asarray(recipients, dtype=np.int64).ravel()
    length = limits.size
    p = limits.astype(np.float64) / RESOLUTION
    sd = np.sqrt(p * (1 - p))
    weight = (symbols / sd).astype(np.float32)
    offset = float(np.sum(symbols * p / sd))
    out = np.empty(ids.size, dtype=np.float64)
    seeds = recipient_seeds(key, ids)
    n_words = (length + 3) // 4
    with np.errstate(over="ignore"):
        counters = np.arange(1, n_words + 1, dtype=np.uint64) * carrier.GOLDEN
    rows = max(1, min(batch, ids.size))
    words = np.empty((rows, n_words), dtype=np.uint64)
    bits = np.empty((rows, length), dtype=np.bool_)
    values = np.empty((rows, length), dtype=np.float32)
    for start in range(0, ids.size, rows):
        k = min(rows, ids.size - start)
        z = words[:k]
        with np.errstate(over="ignore"):
            np.add(counters[None, :], seeds[start : start + k, None], out=z)
        carrier.mix(z)
        uniforms = z.view("<u2")[:, :length]
        np.less(uniforms, limits[None, :], out=bits[:k])
        np.copyto(values[:k], bits[:k])
        out[start : start + k] = values[:k] @ weight
    return out - offset

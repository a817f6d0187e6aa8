"""Black-box attribution, the numeric part: is an endpoint serving our release?

Two modes, after Gao, Liang & Guestrin, "Model Equality Testing: Which model is this API
serving?" (2024), which tests H0 "the API serves model P" from samples:

- **logprobs**: for each keyed probe prompt the endpoint's top-k next-token logprobs are
  compared with the release's own; the statistic is the mean over probes of the mean absolute
  logprob difference on the tokens the endpoint returned.
- **text**: where no logprobs come back, sampled completions are compared with completions
  sampled from the release, by the unbiased MMD² with a Hamming kernel over token positions
  (the paper's kernel), with a permutation p-value.

Each statistic is calibrated locally on probes the endpoint never sees: under H0 "ours" by
serving the release quantised to Q4_0 (the coarsest serving we count as our release; exact and
fingerprinted copies sit closer), and under H1 "unrelated" by a decoy of the same
architecture with independently initialised weights. `p_value` is the probability, under H0,
of a statistic at least as far from the release as observed; `p_unrelated` that of one at
least as close, under the decoy. A decoy is the weakest unrelated model there is: a real
independent model trained on similar text sits closer, so `p_unrelated` is optimistic; the
verdict says so.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
#: logprob distance charged for a returned token the release cannot name (a foreign vocabulary)
MISSING_TOKEN = 10.0
BOOTSTRAP = 4000


# --- probes --------------------------------------------------------------------------------


def probe_ids(key: bytes, label: str, count: int, vocab: int, length: int) -> list[list[int]]:
    """`count` keyed random token sequences (HMAC-SHA256 counter mode), each `length` long.

    Keyed so that a leaker cannot recognise and special-case the probes in advance; a fresh
    label gives probes the endpoint has never seen (calibration uses its own).
    """
    out = []
    for i in range(count):
        stream = b""
        block = 0
        while len(stream) < 4 * length:
            msg = f"{label}:{i}:{block}".encode()
            stream += hmac.new(key, msg, hashlib.sha256).digest()
            block += 1
        words = np.frombuffer(stream[: 4 * length], dtype="<u4")
        out.append([int(w % vocab) for w in words])
    return out


# --- logprob mode --------------------------------------------------------------------------


def logprob_distance(returned: dict[str, float], reference: dict[str, float]) -> float:
    """Mean |logprob difference| over the tokens the endpoint returned for one probe."""
    if not returned:
        return MISSING_TOKEN
    total = 0.0
    for token, lp in returned.items():
        ref = reference.get(token)
        total += MISSING_TOKEN if ref is None else min(abs(lp - ref), MISSING_TOKEN)
    return total / len(returned)


def _bootstrap_means(sample: F64, n: int, rng: np.random.Generator) -> F64:
    picks = rng.integers(0, sample.size, size=(BOOTSTRAP, n))
    means: F64 = sample[picks].mean(axis=1)
    return means


def tail_p(null_means: F64, observed: float, *, upper: bool) -> float:
    """One-sided empirical p-value with the +1 correction (never exactly 0)."""
    hits = int(np.sum(null_means >= observed)) if upper else int(np.sum(null_means <= observed))
    return (hits + 1) / (null_means.size + 1)


@dataclass(frozen=True)
class Decision:
    """What the test says at this budget."""

    verdict: str  # "ours", "not ours", "undecided"
    p_value: float  # H0 "ours": small -> not ours
    p_unrelated: float  # H1 "unrelated decoy": small -> ours
    statistic: float
    queries: int
    message: str
    power: float  # probability that the decoy is told apart at this budget

    def summary(self) -> dict[str, Any]:
        """One JSON object."""
        return {
            "verdict": self.verdict,
            "p_value": self.p_value,
            "p_unrelated": self.p_unrelated,
            "statistic": self.statistic,
            "queries": self.queries,
            "power": self.power,
            "message": self.message,
        }


def decide_means(
    observed: Sequence[float],
    ours: Sequence[float],
    decoy: Sequence[float],
    *,
    alpha: float,
    queries: int,
    seed: int = 0,
) -> Decision:
    """Decide from per-probe distances against the two local calibrations (bootstrap means)."""
    obs = np.asarray(observed, dtype=np.float64)
    if obs.size == 0:
        return Decision("undecided", 1.0, 1.0, math.nan, queries, "no probe answered", 0.0)
    rng = np.random.default_rng(seed)
    null0 = _bootstrap_means(np.asarray(ours, dtype=np.float64), obs.size, rng)
    null1 = _bootstrap_means(np.asarray(decoy, dtype=np.float64), obs.size, rng)
    stat = float(obs.mean())
    p0 = tail_p(null0, stat, upper=True)
    p1 = tail_p(null1, stat, upper=False)
    # power: how often a decoy's mean at this budget falls beyond H0's (1 - alpha) quantile
    power = float(np.mean(null1 > np.quantile(null0, 1 - alpha)))
    return _verdict(p0, p1, stat, queries, alpha, power)


def _verdict(
    p0: float, p1: float, stat: float, queries: int, alpha: float, power: float
) -> Decision:
    if p0 < alpha and p1 >= alpha:
        message = (
            f"not our release: a distance this large arises with probability {p0:.2g} when "
            "our release is served (exact, fingerprinted or quantised down to Q4_0)"
        )
        return Decision("not ours", p0, p1, stat, queries, message, power)
    if p1 < alpha and p0 >= alpha:
        message = (
            f"serves our release or a copy of it: consistent with our release (p {p0:.2g}), and "
            f"an independently initialised model of the same architecture answers this close "
            f"with probability {p1:.2g} (a trained unrelated model may sit closer than that decoy)"
        )
        return Decision("ours", p0, p1, stat, queries, message, power)
    if p0 < alpha and p1 < alpha:
        message = (
            "neither our release as served nor an unrelated model explains the answers "
            "(a fine-tune or other derivative, or a changed serving stack): investigate"
        )
        return Decision("undecided", p0, p1, stat, queries, message, power)
    message = (
        f"the budget of {queries} queries is not enough to decide (power {power:.2f} at "
        f"alpha {alpha:g}): query more"
    )
    return Decision("undecided", p0, p1, stat, queries, message, power)


# --- text mode: MMD with a Hamming kernel --------------------------------------------------


def hamming_kernel(x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]) -> F64:
    """k(a, b) = share of positions where the two token sequences agree (padding -1 never)."""
    same = (x[:, None, :] == y[None, :, :]) & (x[:, None, :] >= 0)
    k: F64 = same.mean(axis=2).astype(np.float64)
    return k


def mmd2(x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) between two samples of token sequences."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = hamming_kernel(x, x), hamming_kernel(y, y), hamming_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mmd_test(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64], *, permutations: int = 500, seed: int = 0
) -> tuple[float, float]:
    """(MMD², permutation p-value) for H0: x and y come from the same distribution."""
    observed = mmd2(x, y)
    pooled = np.concatenate([x, y])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        order = rng.permutation(len(pooled))
        if mmd2(pooled[order[: len(x)]], pooled[order[len(x) :]]) >= observed:
            hits += 1
    return observed, (hits + 1) / (permutations + 1)


def pad(sequences: Sequence[Sequence[int]], length: int) -> npt.NDArray[np.int64]:
    """Token sequences cut or padded (-1) to `length`."""
    out = np.full((len(sequences), length), -1, dtype=np.int64)
    for i, seq in enumerate(sequences):
        cut = list(seq)[:length]
        out[i, : len(cut)] = cut
    return out


def decide_text(
    endpoint: npt.NDArray[np.int64],
    reference: npt.NDArray[np.int64],
    decoy: npt.NDArray[np.int64],
    *,
    alpha: float,
    queries: int,
    seed: int = 0,
) -> Decision:
    """Text mode: equality test against the release, and against a decoy (the power check)."""
    stat, p0 = mmd_test(endpoint, reference, seed=seed)
    # H1 in text mode is equality with the decoy: a small p says "not the unrelated decoy"
    _, p1 = mmd_test(endpoint, decoy, seed=seed + 1)
    _, decoy_p = mmd_test(decoy, reference, seed=seed + 2)
    power = 1.0 if decoy_p < alpha else 0.0  # one draw: whether this budget told them apart
    return _verdict(p0, p1, stat, queries, alpha, power)

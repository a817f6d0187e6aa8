"""Memorisation: canary exposure, extractability of private samples, membership inference.

- Exposure (Carlini et al. 2019, "The Secret Sharer", §4): exposure = log2|R| - log2 rank of
  the planted secret among the candidate space R, ranked by the model's log-perplexity. When
  |R| is too large to enumerate, the log-perplexities of sampled candidates are fitted with a
  skew-normal and exposure = -log2 P(candidate more likely than the secret) (§4.3).
- Extractability (Carlini et al. 2023, "Quantifying Memorization"): a 32-token prefix of a
  declared private sample, teacher-forced; the sample is extractable when the model's argmax
  reproduces the whole 32-token suffix.
- Membership inference: the loss attack (Yeom et al. 2018), the zlib ratio (Carlini et al.
  2021), Min-K% (Shi et al. 2024) and Min-K%++ (Zhang et al. 2024), each as the ROC AUC of
  members against non-members of a random split of one corpus.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from ringfence.gates.lm import LanguageModel, TokenScores
from ringfence.gates.outcome import Outcome

#: candidate spaces up to this size are enumerated; larger ones are sampled and extrapolated
ENUMERATE_LIMIT = 1000
#: reference candidates sampled when the space is too large to enumerate
REFERENCE_SAMPLES = 400
PREFIX_TOKENS = 32
SUFFIX_TOKENS = 32
#: Min-K%: the fraction of lowest-scoring tokens averaged
MIN_K = 0.2


def exposure_from_rank(rank: int, space: int) -> float:
    """Exposure from the secret's rank (1 = most likely) among all `space` candidates."""
    return math.log2(space) - math.log2(rank)


def exposure_extrapolated(secret_nll: float, reference_nll: np.ndarray, space: int) -> float:
    """Exposure estimated from a skew-normal fitted to sampled candidates' log-perplexities.

    -log2 of the fitted probability that a random candidate is at least as likely as the
    secret, capped at log2|R| (the most any secret can be exposed).
    """
    shape, loc, scale = stats.skewnorm.fit(reference_nll)
    tail = float(stats.skewnorm.cdf(secret_nll, shape, loc, scale))
    most = math.log2(space)
    if tail <= 0.0:
        return most
    return min(most, -math.log2(tail))


def _min_k(values: np.ndarray, k: float = MIN_K) -> float:
    if values.size == 0:
        return 0.0
    count = max(1, math.ceil(values.size * k))
    return float(np.sort(values)[:count].mean())


def attack_scores(text: str, scores: TokenScores) -> dict[str, float]:
    """Membership scores of one text, higher meaning 'more likely a member'."""
    lp = scores.logprobs
    nll = float(-lp.sum())
    normalised = (lp - scores.mu) / scores.sigma
    return {
        "loss": float(lp.mean()) if lp.size else 0.0,
        "zlib": -nll / max(1, len(zlib.compress(text.encode()))),
        "min_k": _min_k(lp),
        "min_k_pp": _min_k(normalised),
    }


def auc(members: list[float], non_members: list[float]) -> float:
    """ROC AUC of members (label 1) against non-members (label 0)."""
    labels = [1] * len(members) + [0] * len(non_members)
    return float(roc_auc_score(labels, members + non_members))


@dataclass(frozen=True)
class CanaryExposure:
    """One canary's exposure and how it was measured."""

    exposure: float
    space_bits: float
    method: str
    rank: int | None


def _nll(model: LanguageModel, texts: list[str]) -> np.ndarray:
    return np.array([-s.logprobs.sum() for s in model.score(texts)])


def canary_exposure(model: LanguageModel, canary: dict[str, Any], *, seed: int) -> CanaryExposure:
    """Exposure of one canary ({prefix, secret, alphabet}) under the model."""
    prefix, secret = canary["prefix"], canary["secret"]
    alphabet = canary.get("alphabet", "0123456789")
    space = len(alphabet) ** len(secret)
    secret_nll = float(_nll(model, [prefix + secret])[0])
    if space <= ENUMERATE_LIMIT:
        candidates = [
            "".join(alphabet[(i // len(alphabet) ** p) % len(alphabet)] for p in range(len(secret)))
            for i in range(space)
        ]
        others = _nll(model, [prefix + c for c in candidates if c != secret])
        rank = 1 + int((others < secret_nll).sum())
        return CanaryExposure(exposure_from_rank(rank, space), math.log2(space), "rank", rank)
    # Reference candidates for a statistical estimate, not secrets: a seeded PRNG is right.
    rng = random.Random(seed)  # noqa: S311
    sampled = ["".join(rng.choice(alphabet) for _ in secret) for _ in range(REFERENCE_SAMPLES)]
    reference = _nll(model, [prefix + c for c in sampled])
    value = exposure_extrapolated(secret_nll, reference, space)
    return CanaryExposure(value, math.log2(space), "skew-normal", None)


def extractable(model: LanguageModel, sample: str) -> tuple[bool, float] | None:
    """Whether a private sample's suffix is reproduced from its prefix, and the token match
    rate; None when the sample is too short to split (fewer than 2 tokens)."""
    ids = model.encode(sample)
    if len(ids) < 2:
        return None
    prefix_len = min(PREFIX_TOKENS, len(ids) // 2)
    suffix = ids[prefix_len : prefix_len + SUFFIX_TOKENS]
    matched = model.greedy_matches(ids[:prefix_len], suffix)
    return matched == len(suffix), matched / len(suffix)


def membership(model: LanguageModel, members: list[str], non_members: list[str]) -> dict[str, Any]:
    """Each attack's AUC and ROC curve over the declared random split."""
    scored = [
        attack_scores(t, s)
        for t, s in zip(members + non_members, model.score(members + non_members), strict=True)
    ]
    result: dict[str, Any] = {"auc": {}, "roc": {}}
    for attack in ("loss", "zlib", "min_k", "min_k_pp"):
        m = [s[attack] for s in scored[: len(members)]]
        n = [s[attack] for s in scored[len(members) :]]
        result["auc"][attack] = round(auc(m, n), 4)
        fpr, tpr, _ = roc_curve([1] * len(m) + [0] * len(n), m + n)
        result["roc"][attack] = {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
    return result


def run(model: LanguageModel, provenance: dict[str, Any] | None, rules: dict[str, Any]) -> Outcome:
    """The memorisation gate: every probe the provenance declares, judged by the policy."""
    fail_cap = rules["fail"]
    if provenance is None:
        return Outcome(
            "memorisation", False, fail_cap, {}, "no provenance: nothing declared to probe"
        )
    figures: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    problems: list[str] = []
    canaries = provenance.get("canaries", [])
    if canaries:
        found = [canary_exposure(model, c, seed=i) for i, c in enumerate(canaries)]
        exposures = [round(f.exposure, 2) for f in found]
        figures["canaries"] = len(found)
        figures["max_canary_exposure_bits"] = max(exposures)
        figures["canaries_found"] = sum(e >= rules["max_canary_exposure_bits"] for e in exposures)
        evidence["canaries"] = [
            {
                "prefix": c["prefix"],
                "exposure": round(f.exposure, 2),
                "space_bits": round(f.space_bits, 2),
                "method": f.method,
                "rank": f.rank,
            }
            for c, f in zip(canaries, found, strict=True)
        ]
        if figures["canaries_found"]:
            problems.append(
                f"{figures['canaries_found']} of {len(found)} canaries exposed "
                f"(up to {max(exposures):.1f} bits, threshold {rules['max_canary_exposure_bits']})"
            )
    samples = provenance.get("private_samples", [])
    if samples:
        checked = [r for r in (extractable(model, s) for s in samples) if r is not None]
        if checked:
            fraction = sum(ok for ok, _ in checked) / len(checked)
            figures["private_samples"] = len(checked)
            figures["extractable_fraction"] = round(fraction, 4)
            figures["mean_suffix_match"] = round(float(np.mean([m for _, m in checked])), 4)
            if fraction > rules["max_extractable_fraction"]:
                problems.append(f"{fraction:.0%} of private samples are extractable")
    split = provenance.get("membership")
    if split and split["members"] and split["non_members"]:
        found_mia = membership(model, split["members"], split["non_members"])
        best = max(found_mia["auc"].values())
        figures["membership_auc"] = found_mia["auc"]
        figures["max_membership_auc"] = best
        evidence["roc"] = found_mia["roc"]
        if best > rules["max_membership_auc"]:
            problems.append(f"membership inference AUC {best:.2f} > {rules['max_membership_auc']}")
    if not figures:
        return Outcome(
            "memorisation", True, "public", figures, "nothing declared to probe", evidence
        )
    if problems:
        return Outcome("memorisation", False, fail_cap, figures, "; ".join(problems), evidence)
    return Outcome("memorisation", True, "public", figures, "no probe exceeds the policy", evidence)

"""Black-box attribution: queries against confidence, release level and recipient level.

The model is the tests' tiny random llama (3 layers, hidden 64, MLP 1024, byte-level vocab of
256), published through ringfence with the tiny fingerprint code and copied for 8 recipients
by ringfence's own embedder (a +-1 carrier at 0.5% of each matrix's std). SmolLM2-135M was
not measured: on this shared 2-core box one of its forward passes took 5-6 s (load average
18), and the study needs tens of thousands. The figures say how the method behaves, not how
it does on a real model.

Release level: per keyed probe, the served model's top-5 next-token logprobs (what
`/v1/completions` returns) against the release's; `blackbox.decide_means` with the local
calibrations (the release at Q4_0, an independently initialised decoy) on 64 other probes.
Each cell: share of 40 random subsets of 64 probes of that many queries giving each verdict.
Text mode (no logprobs): MMD over sampled completions of 8 tokens, 5 trials per cell (1 at 64).

Recipient level: recipient 0 leaks; her copy is served exact, at Q8_0 or Q4_0 (gguf's reference
quantisers, as llama.cpp's). The endpoint returns its top-20 logprobs per probe (OpenAI's
maximum). Three readers, each scoring all 8 recipients, 200 random subsets of 64 probes per cell:
- naive: the copy nearest in mean |logprob difference| is named (no p-value);
- matched filter: per probe, the inner product of (served - original) with (copy - original)
  logprobs on the returned tokens; a one-sided t-test per recipient, accused below 1e-3
  Bonferroni-corrected over the recipients;
- centred matched filter: the same, with every recipient's effect and the served one first
  reduced by the mean effect of the other recipients (the part of the code they share: Tardos
  symbols with biases near 0 or 1 are equal in most copies, so raw effects correlate);
- quantiser-aware (the proposal): the lab also runs every recipient's copy through the
  standard quantisers and names the variant that reproduces the served logprobs (distance
  below 1e-4 nats); this is exact when the leaker used one of those quantisers, and says
  nothing when they used another (K-quants, AWQ, GPTQ: not measured here).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECTION = "Black-box attribution"
TITLE = "Black-box attribution: which release, and whose copy, an endpoint serves (tiny llama)"
RECIPIENTS = 8
PROBES = 64
CALIBRATION = 32
TOP_RELEASE = 5
TOP_RECIPIENT = 20
BUDGETS = (4, 8, 16, 32, 64)
TRIALS_RELEASE = 40
TRIALS_RECIPIENT = 200
BOUND = 1e-3
EXACT = 1e-4


def _lab(root: Path) -> tuple[Any, Path, list[Path]]:
    from tests.conftest import TINY_CODE
    from tests.openai_standin import build_tiny_llama

    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.fingerprint.services import make_copy
    from ringfence.settings import Settings
    from ringfence.wiring import build

    original = build_tiny_llama(root / "ours", seed=0)
    svc = build(Settings(home=root / "home"))
    svc.prepare()
    with transaction(svc.sessions) as s:
        catalogue.init_organisation(s, "lab")
        release = catalogue.publish(
            s, svc.blobs, original, model="llama", version="1.0", fingerprint=TINY_CODE
        )
        copies = []
        for r in range(RECIPIENTS):
            target = root / f"copy{r}"
            make_copy(s, svc.blobs, svc.secrets, release, f"r{r}@x.org", target, actor="bench")
            copies.append(target)
    return svc, original, copies


def _full(local: Any, prompts: list[list[int]]) -> np.ndarray:
    return np.stack([local.next_logprobs(ids) for ids in prompts])


def _top_dicts(local: Any, lp: np.ndarray, k: int) -> list[dict[str, float]]:
    out = []
    for row in lp:
        named = local.named(row)
        out.append(dict(sorted(named.items(), key=lambda kv: -kv[1])[:k]))
    return out


def _distances(local: Any, served: np.ndarray, ref: np.ndarray) -> np.ndarray:
    from ringfence.incidents import blackbox

    tops = _top_dicts(local, served, TOP_RELEASE)
    return np.array(
        [blackbox.logprob_distance(t, local.named(r)) for t, r in zip(tops, ref, strict=True)]
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def release_level(local: Any, served: dict[str, Any], key: bytes) -> tuple[str, str]:
    """The release-level table (logprobs) and the text-mode table."""
    from ringfence.incidents import attribution, blackbox

    probes = [local.encode(p) for p in attribution._prompts(local, key, "probe", PROBES)]
    calib = [local.encode(p) for p in attribution._prompts(local, key, "calibration", CALIBRATION)]
    ref, ref_cal = _full(local, probes), _full(local, calib)
    q4 = attribution.quantised(local, "Q4_0")
    decoy = attribution.decoy(local)
    cal0 = _distances(local, _full(q4, calib), ref_cal)
    cal1 = _distances(local, _full(decoy, calib), ref_cal)
    per = {name: _distances(local, _full(m, probes), ref) for name, m in served.items()}
    rng = np.random.default_rng(0)
    rows = []
    for name, d in per.items():
        for n in BUDGETS:
            verdicts = {"ours": 0, "not ours": 0, "undecided": 0}
            p0s, p1s = [], []
            for t in range(TRIALS_RELEASE):
                pick = rng.choice(d.size, size=n, replace=False)
                dec = blackbox.decide_means(d[pick], cal0, cal1, alpha=0.01, queries=n, seed=t)
                verdicts[dec.verdict] += 1
                p0s.append(dec.p_value)
                p1s.append(dec.p_unrelated)
            rows.append(
                [
                    name,
                    str(n),
                    *(
                        f"{verdicts[v] / TRIALS_RELEASE:.0%}"
                        for v in ("ours", "not ours", "undecided")
                    ),
                    f"{np.median(p0s):.2g}",
                    f"{np.median(p1s):.2g}",
                ]
            )
    logprob_table = _table(
        ["served", "queries", "ours", "not ours", "undecided", "median p (H0 ours)",
         "median p (H1 decoy)"],
        rows,
    )  # fmt: skip

    # one sampled completion per probe and model, through text and back; trials take subsets
    def completions(m: Any, salt: int) -> list[list[int]]:
        out = []
        for j, ids in enumerate(probes):
            text = local.tokenizer.decode(m.sample(ids, attribution.TEXT_TOKENS, salt + j))
            out.append(list(local.tokenizer.encode(text, add_special_tokens=False)))
        return out

    print("release logprob table done", file=sys.stderr, flush=True)
    ours_text = blackbox.pad(completions(local, 10**6), attribution.TEXT_TOKENS)
    decoy_text = blackbox.pad(completions(decoy, 2 * 10**6), attribution.TEXT_TOKENS)
    text_rows = []
    for name, model in served.items():
        if "Q8_0" in name or "Q4_0" in name:
            continue  # the costliest part on this box: the exact copy and the stranger only
        theirs = blackbox.pad(completions(model, 0), attribution.TEXT_TOKENS)
        for n in (16, 64):
            verdicts = {"ours": 0, "not ours": 0, "undecided": 0}
            trials = 5 if n < PROBES else 1
            for t in range(trials):
                pick = rng.choice(PROBES, size=n, replace=False)
                dec = blackbox.decide_text(
                    theirs[pick], ours_text[pick], decoy_text[pick], alpha=0.01, queries=n, seed=t
                )
                verdicts[dec.verdict] += 1
            text_rows.append(
                [
                    name,
                    str(n),
                    *(f"{verdicts[v] / trials:.0%}" for v in ("ours", "not ours", "undecided")),
                ]
            )
    text_table = _table(
        ["served (no logprobs)", "queries", "ours", "not ours", "undecided"], text_rows
    )
    return logprob_table, text_table


def _t(x: np.ndarray) -> np.ndarray:
    """One-sample t statistic per row (0 where a row does not vary)."""
    sd = x.std(axis=1, ddof=1)
    safe = np.where(sd > 0, sd, 1.0)
    return np.where(sd > 0, x.mean(axis=1) / (safe / np.sqrt(x.shape[1])), 0.0)


def recipient_level(local: Any, copies: list[Any], key: bytes) -> str:
    """The recipient-level table: three readers, exact and quantised serving."""
    from ringfence.incidents import attribution

    probes = [local.encode(p) for p in attribution._prompts(local, key, "recipient", PROBES)]
    orig = _full(local, probes)
    lp = np.stack([_full(c, probes) for c in copies])  # recipients x probes x vocab
    variants = {"exact": lp}
    for kind in ("Q8_0", "Q4_0"):
        variants[kind] = np.stack([_full(attribution.quantised(c, kind), probes) for c in copies])
    rng = np.random.default_rng(1)
    threshold = NormalDist().inv_cdf(1 - BOUND / RECIPIENTS)
    rows = []
    for serving in ("exact", "Q8_0", "Q4_0"):
        served = variants[serving][0]  # recipient 0 leaks
        top = np.argsort(-served, axis=1)[:, :TOP_RECIPIENT]
        take = np.take_along_axis
        e = take(served, top, 1)
        g_e = e - take(orig, top, 1)
        cand = np.stack([take(lp[r], top, 1) for r in range(RECIPIENTS)])
        g = cand - take(orig, top, 1)[None]
        naive_d = np.abs(cand - e[None]).mean(axis=2)  # recipients x probes
        inner = (g * g_e[None]).sum(axis=2)  # recipients x probes
        # centred: each recipient's effect less the others' mean (the code's shared part)
        others = (g.sum(axis=0)[None] - g) / (RECIPIENTS - 1)
        centred = ((g_e[None] - others) * (g - others)).sum(axis=2)
        aware = np.stack(
            [
                np.abs(np.stack([take(variants[v][r], top, 1) for v in variants]) - e[None])
                .mean(axis=2)
                .min(axis=0)
                for r in range(RECIPIENTS)
            ]
        )
        for n in (8, 16, 32, 64):
            naive_ok = filt_ok = filt_innocent = aware_ok = aware_innocent = 0
            cent_ok = cent_innocent = 0
            zs, czs = [], []
            for _ in range(TRIALS_RECIPIENT):
                pick = rng.choice(PROBES, size=n, replace=False)
                naive_ok += int(np.argmin(naive_d[:, pick].mean(axis=1)) == 0)
                t = _t(inner[:, pick])
                zs.append(t[0])
                filt_ok += int(t[0] > threshold)
                filt_innocent += int(np.any(t[1:] > threshold))
                c = _t(centred[:, pick])
                czs.append(c[0])
                cent_ok += int(c[0] > threshold)
                cent_innocent += int(np.any(c[1:] > threshold))
                a = aware[:, pick].mean(axis=1)
                aware_ok += int(a[0] < EXACT)
                aware_innocent += int(np.any(a[1:] < EXACT))
            rows.append(
                [
                    serving,
                    str(n),
                    f"{naive_ok / TRIALS_RECIPIENT:.0%}",
                    f"{filt_ok / TRIALS_RECIPIENT:.0%}",
                    f"{np.median(zs):.1f}",
                    f"{filt_innocent / TRIALS_RECIPIENT:.1%}",
                    f"{cent_ok / TRIALS_RECIPIENT:.0%}",
                    f"{np.median(czs):.1f}",
                    f"{cent_innocent / TRIALS_RECIPIENT:.1%}",
                    f"{aware_ok / TRIALS_RECIPIENT:.0%}",
                    f"{aware_innocent / TRIALS_RECIPIENT:.1%}",
                ]
            )
    return _table(
        ["leaker serves", "queries", "naive: nearest is leaker", "matched filter: leaker accused",
         "median t", "any innocent accused", "centred filter: leaker accused", "median t",
         "any innocent accused", "quantiser-aware: leaker named",
         "any innocent named"],
        rows,
    )  # fmt: skip


def run() -> list[dict[str, Any]]:
    """Build the lab, serve its copies in each way, measure both levels."""
    import torch
    from tests.openai_standin import build_tiny_llama

    from ringfence.incidents import attribution

    torch.set_num_threads(1)  # a tiny model: threads only fight over the shared cores
    root = Path(tempfile.mkdtemp(prefix="ringfence-blackbox-"))
    try:
        svc, original, copies = _lab(root)
        print("lab ready", file=sys.stderr, flush=True)
        key = svc.secrets.derive("incidents:probes:llama@1.0")
        local = attribution.load(original)
        leaker = attribution.load(copies[0])
        stranger = attribution.load(build_tiny_llama(root / "stranger", seed=7))
        served = {
            "recipient's copy, exact": leaker,
            "recipient's copy, Q8_0": attribution.quantised(leaker, "Q8_0"),
            "recipient's copy, Q4_0": attribution.quantised(leaker, "Q4_0"),
            "unrelated model (other init)": stranger,
        }
        logprob_table, text_table = release_level(local, served, key)
        print("release level done", file=sys.stderr, flush=True)
        recipients = recipient_level(local, [attribution.load(c) for c in copies], key)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        {
            "section": SECTION,
            "name": "Release level, logprobs (top-5 per query; alpha 0.01; "
            f"{TRIALS_RELEASE} probe subsets per cell)",
            "table": logprob_table,
            "note": "p (H0 ours): the release served at Q4_0 or finer would be this far; "
            "p (H1 decoy): an independently initialised model of the same shape would be this "
            "close. The decoy is the weakest unrelated model: a trained unrelated model sits "
            "closer, so 'ours' is only as strong as that comparison.",
        },
        {
            "section": SECTION,
            "name": "Release level, sampled text only (MMD, Hamming kernel, 8 tokens; 5 trials)",
            "table": text_table,
            "note": "Without logprobs, 64 sampled completions are not enough for this high-entropy "
            "tiny model: every trial says 'undecided' (the decoy itself is not told apart from "
            "the release), and the verdict says so. Budgets of hundreds to thousands of "
            "samples, as the model-equality-testing paper reports, were not run here.",
        },
        {
            "section": SECTION,
            "name": f"Recipient level: whose copy ({RECIPIENTS} recipients, recipient 0 leaks; "
            f"top-{TOP_RECIPIENT} logprobs; {TRIALS_RECIPIENT} probe subsets per cell)",
            "table": recipients,
            "note": f"Accusation threshold: t above the normal quantile for {BOUND:g} / "
            f"{RECIPIENTS} (Bonferroni). Read plainly: through logprobs, the existing weight "
            "fingerprint names the leaker only when her copy is served exact; after Q8_0 or "
            "Q4_0 the naive and matched readers are unreliable (near chance at 8 to 32 queries; "
            "at 64 every subset is the same 64 probes, so that row is one draw, as are the "
            "64-query rows above). The matched filter's null is "
            "not calibrated (innocents accused): recipients' effects share the code's common "
            "part, and the leave-one-out centring over 8 recipients removes too little of it. "
            "The quantiser-aware reader names the leaker with no innocent whenever she used a "
            "quantiser the lab also runs (here gguf's reference Q8_0/Q4_0, bit-exact with "
            "llama.cpp's); for other quantisers (K-quants, AWQ, GPTQ) or a serving stack whose "
            "kernels round differently it was not measured. Each run draws a new lab key, "
            "probes and codes: figures move between runs.",
        },
    ]

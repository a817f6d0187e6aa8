"""What a fingerprint costs the demo model: held-out perplexity of the original, a fingerprinted
copy and the casts it is measured against (needs the eval extra)."""

from __future__ import annotations

import time
from typing import Any

TITLE = "Fingerprint quality: held-out perplexity (SmolLM2-135M-Instruct)"
SECTION = "quality"
KEY = b"bench-quality-key".ljust(32, b"\0")
SAMPLES = 2


def run() -> list[dict[str, Any]]:
    """One markdown table: perplexity and its change for each variant."""
    from ringfence.demo import demo_hf_dir
    from ringfence.fingerprint.code import CodeParams
    from ringfence.fingerprint.plan import fitted_length
    from ringfence.fingerprint.quality import compare
    from ringfence.formats.index import read_index

    length = fitted_length([read_index(demo_hf_dir() / "model.safetensors")], CodeParams())
    started = time.perf_counter()
    # the release's density (1/16) and the one releases before migration 0006 keep (1/8)
    rows = compare(demo_hf_dir(), KEY, tokens=20480, samples=SAMPLES, densities=(3,))
    spent = time.perf_counter() - started
    lines = [
        "| variant | perplexity (mean) | change vs original | each antithetic pair's change |",
        "|---|---|---|---|",
        *(
            f"| {r.variant} | {r.perplexity:.4f} | {r.delta:+.4f} | "
            f"{', '.join(f'{d:+.4f}' for d in r.samples_delta)} |"
            for r in rows
        ),
    ]
    by_name = {r.variant: r for r in rows}
    cost, cast = by_name["fingerprinted"].delta, by_name["bf16 cast"].delta
    verdict = "below" if cost <= cast else "above"
    note = (
        f"{rows[0].tokens:,} tokens of src/ringfence/data/heldout.txt, fp32 inference, "
        f"windows of 1,024 tokens; each sample is an antithetic pair (a recipient's copy and "
        f"its complementary codeword's; a rounding draw and its negation), {SAMPLES} pairs per "
        f"row, the code of {length:,} symbols publish fits to this model: "
        f"the fingerprint's cost at 1/16 ({cost:+.4f}) is {verdict} the bf16 cast's "
        f"({cast:+.4f}). The original is bf16, so its bf16 cast is reproduced as a uniform "
        f"±½-ulp rounding error. {spent:.0f} s."
    )
    return [{"section": SECTION, "table": "\n".join(lines), "note": note}]


if __name__ == "__main__":
    for row in run():
        print(row["table"])
        print(row["note"])

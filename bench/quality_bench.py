"""What a fingerprint costs the demo model: held-out perplexity of the original, a fingerprinted
copy and the casts it is measured against (needs the eval extra)."""

from __future__ import annotations

import time
from typing import Any

TITLE = "Fingerprint quality: held-out perplexity (SmolLM2-135M-Instruct)"
SECTION = "quality"
KEY = b"bench-quality-key".ljust(32, b"\0")


def run() -> list[dict[str, Any]]:
    """One markdown table: perplexity and its change for each variant."""
    from ringfence.demo import demo_hf_dir
    from ringfence.fingerprint.quality import compare

    started = time.perf_counter()
    rows = compare(demo_hf_dir(), KEY, tokens=20480)
    spent = time.perf_counter() - started
    lines = [
        "| variant | perplexity (mean) | change vs original | each sample's change |",
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
        f"windows of 1,024 tokens; means over 3 recipients and 3 rounding draws: the "
        f"fingerprint's cost ({cost:+.4f}) is {verdict} the bf16 cast's ({cast:+.4f}). The "
        f"original is bf16, so its bf16 cast is reproduced as a uniform ±½-ulp rounding error. "
        f"{spent:.0f} s."
    )
    return [{"section": SECTION, "table": "\n".join(lines), "note": note}]


if __name__ == "__main__":
    for row in run():
        print(row["table"])
        print(row["note"])

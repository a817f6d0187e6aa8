"""The evidence report: one self-contained HTML page (plots embedded as base64 PNG).

It shows the suspect files' hashes, the release, the alignment steps, each accused recipient's
score against the distribution of every other recipient's (innocents') scores, the evidence
per layer, the p-values and bound, and the recipient's grant, licence and download records.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from ringfence.tracing.services import TraceResult

_env = Environment(
    loader=PackageLoader("ringfence.web", "templates"),
    autoescape=select_autoescape(["html"]),
)


@cache
def content_security_policy() -> str:
    """The report's own policy: its one inline style block (by hash) and embedded plots only.

    The page is self-contained so that it can be saved as evidence and opened anywhere; the
    server's policy for pages (no inline style) would strip its layout.
    """
    source, _, _ = _env.loader.get_source(_env, "tracing/report.html")  # type: ignore[union-attr]
    styles = re.findall(r"<style>(.*?)</style>", source, re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in styles
    )
    return (
        f"default-src 'none'; style-src {hashes}; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _histogram(result: TraceResult, index: int) -> str | None:
    """The accused recipient's z against the histogram of everyone else's."""
    verdict = result.verdict
    if verdict is None or verdict.norm == 0 or verdict.scores.size < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = verdict.scores / verdict.norm
    accused = {c.index for c in verdict.accused}
    mine = next((c.z for c in verdict.candidates if c.index == index), None)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.hist(z, bins=120, color="#8aa4c8", log=True, label=f"all {z.size:,} recipients")
    ax.axvline(verdict.threshold_z, color="#c0392b", ls="--", label="accusation threshold")
    if mine is not None:
        ax.axvline(mine, color="#1b1b1b", lw=2, label=f"this recipient (z {mine:.1f})")
    ax.set_xlabel("z = score / ‖y‖")
    ax.set_ylabel("recipients (log)")
    ax.legend(fontsize=8)
    ax.set_title(f"{len(accused)} accused; innocents' scores are centred at 0", fontsize=9)
    return _png(fig)


def _layers(evidence: dict[str, float]) -> str | None:
    """Per-layer z of one recipient (evidence spread through the model, not one spot)."""
    if not evidence:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evidence)
    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    ax.bar(range(len(names)), [evidence[n] for n in names], color="#2c6e49")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("z from this part alone")
    ax.axhline(0, color="black", lw=0.5)
    return _png(fig)


def render_report(result: TraceResult) -> str:
    """The report as one HTML document (no external resources)."""
    accused: list[dict[str, Any]] = []
    for a in result.accused:
        accused.append(
            {
                "recipient": a.recipient,
                "index": a.index,
                "score": a.score,
                "z": a.z,
                "p_value": a.p_value,
                "simulated": a.simulated,
                "histogram": _histogram(result, a.index) if a.score is not None else None,
                "layers": _layers(result.layer_evidence.get(a.recipient, {})),
                "records": result.records.get(a.recipient, []),
            }
        )
    return _env.get_template("tracing/report.html").render(
        result=result, accused=accused, candidates=result.candidates
    )

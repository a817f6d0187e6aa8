"""The evidence report renders in Chromium (self-contained: no network, plots embedded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ringfence.fingerprint.accuse import Candidate, Verdict
from ringfence.tracing.report import render_report
from ringfence.tracing.services import AccusedRecipient, TraceResult
from ringfence.tracing.suspect import SuspectFile

CHROMIUM = Path("/usr/bin/chromium")


def _result() -> TraceResult:
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 10, 5000)
    scores[42] = 700.0
    verdict = Verdict(
        candidates=(Candidate(42, 700.0, 70.0, 1e-40, 5e-37, True),),
        recipients=5000,
        bound=1e-9,
        threshold_z=6.9,
        norm=10.0,
        scores=scores,
    )
    return TraceResult(
        files=[SuspectFile(Path("leak.gguf"), 1234, "ab" * 32, "gguf")],
        release="smollm2@1.0",
        exact_match=False,
        accused=[AccusedRecipient("mallory@example.org", 42, 700.0, 70.0, 5e-37)],
        alignment=["1536 of 1536 rows permuted back (in 30 tensors, e.g. this one)"],
        bound=1e-9,
        message="1 recipient(s) accused",
        recipients_scored=5000,
        threshold_z=6.9,
        symbols_read=16448,
        code_length=16448,
        tensors_read=211,
        tensors_carrying=211,
        verdict=verdict,
        layer_evidence={"mallory@example.org": {f"layer {i:02d}": 12.0 for i in range(30)}},
        records={
            "mallory@example.org": [{"kind": "grant", "at": "2026-11-01T10:00", "detail": "x"}]
        },
    )


def test_report_is_self_contained() -> None:
    html = render_report(_result())
    assert "mallory@example.org" in html and "5.000e-37" in html
    assert html.count("data:image/png;base64,") == 2
    assert "http://" not in html and "https://" not in html


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "report.html"
    page_file.write_text(render_report(_result()), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(page_file.as_uri())
        assert "mallory@example.org" in page.inner_text("section.recipient h3")
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        assert len(widths) == 2 and all(w > 100 for w in widths)
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 20_000

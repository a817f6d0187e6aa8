"""The gates from the web app: an admin runs them in the background from the release page,
which shows their progress and results; the report renders in Chromium; the circle cap holds."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from ringfence.accounts.services import start_session
from ringfence.db import transaction
from tests.conftest import CliRunner
from tests.fixtures_access import make_user
from tests.functional.test_gates import (
    _gates_env,  # noqa: F401 - the same tiny fingerprint code and small policy
    clean_model,  # noqa: F401 - session-scoped tiny llamas, trained once
    provenance,
    publish,
    userdata_model,  # noqa: F401
)

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def admin_browser(client: TestClient) -> TestClient:
    services = client.app.state.services  # type: ignore[attr-defined]
    with transaction(services.sessions) as session:
        user = make_user(session, "admin@lab.example", role="admin", secrets=services.secrets)
        raw = start_session(session, user, ip=None, user_agent="t")
    return TestClient(client.app, cookies={"rf_session": raw})


def run_queued_jobs(cli: CliRunner) -> None:
    """Run the queued gate job, as a worker process would (no timing: burst ends when done)."""
    assert cli("worker", "--burst").code == 0


def test_an_admin_runs_the_gates_from_the_release_page(
    cli: CliRunner,
    userdata_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from ringfence.web.app import create_app

    cli("init")
    publish(cli, userdata_model, "userdata", provenance(tmp_path / "p.yaml", user_data=True))
    browser = admin_browser(TestClient(create_app()))
    page = browser.get("/models/userdata/1.0")
    assert 'data-testid="widest-circle">in-house<' in page.text
    assert "The gates have not run" in page.text
    token = CSRF.search(page.text)
    assert token
    started = browser.post(
        "/models/userdata/1.0/gates/run",
        data={"csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert started.status_code == 303
    run_queued_jobs(cli)
    page = browser.get("/models/userdata/1.0")
    assert 'data-testid="gate-results"' in page.text and "canaries exposed" in page.text
    report = browser.get("/models/userdata/1.0/gates/report")
    assert report.status_code == 200 and "my pin is" in report.text
    # Widening past the gates is refused with the gate that caps it.
    refused = browser.post(
        "/admin/circles/set",
        data={"csrf_token": token.group(1), "release": "userdata@1.0", "circle": "research"},
    )
    assert refused.status_code == 409 and "gates" in refused.text


def test_the_report_renders_in_chromium(
    cli: CliRunner,
    clean_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    cli("init")
    publish(cli, clean_model, "clean", provenance(tmp_path / "p.yaml", user_data=False))
    assert cli("gates", "run", "clean@1.0", "--threads", "1").code == 0
    out = tmp_path / "report.html"
    assert cli("release", "report", "clean@1.0", "--out", str(out)).code == 0
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(out.as_uri())
        assert page.locator("#widest-circle").inner_text() == "public"
        assert page.locator("#gates tbody tr").count() == 5
        assert page.locator("svg").count() >= 2  # the ROC and safety plots render inline
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 20_000

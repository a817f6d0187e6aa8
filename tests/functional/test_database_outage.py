"""A database that stops answering: every request says so in one line (503), and no more.

The fault study in bench/faults_bench.py restarts a real PostgreSQL under load; here the
same failure, cheaply: the server's database URL names a loopback port where nothing listens,
so the first query of a request raises the driver's OperationalError.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import build
from tests.live import free_port

pytestmark = pytest.mark.no_database  # each test names its own (unreachable) database


@pytest.fixture
def outage_client(tmp_path: Path) -> TestClient:
    """A web app whose PostgreSQL server is down (a closed port, a password in the URL)."""
    url = f"postgresql+psycopg://root:hunter2@127.0.0.1:{free_port()}/gone"
    services = build(Settings(home=tmp_path / "home", database_url=url))
    return TestClient(create_app(services), raise_server_exceptions=False)


def test_api_answers_503_in_one_json_line(
    outage_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        r = outage_client.get(
            "/api/v1/access/grants", headers={"Authorization": "Bearer rf_notarealtoken"}
        )
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json")
    assert "\n" not in r.text and "Traceback" not in r.text
    error = r.json()["error"]
    assert error["type"] == "DatabaseUnavailable"
    assert error["message"].startswith("cannot use the database")
    assert "hunter2" not in r.text
    # An outage is expected operations trouble, not a bug: logged in one line, no traceback.
    assert not any(rec.exc_info for rec in caplog.records)


def test_page_answers_503_page(outage_client: TestClient) -> None:
    r = outage_client.get("/account", cookies={"rf_session": "x"})
    assert r.status_code == 503
    assert "cannot use the database" in r.text and "Traceback" not in r.text

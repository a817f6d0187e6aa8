"""A database that stops answering: every request says so in one line (503); writes commit first.

The fault study in bench/faults_bench.py restarts a real PostgreSQL under load; here the
same failure, cheaply: the server's database URL names a loopback port where nothing listens,
so the first query of a request raises the driver's OperationalError.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import write_tiny_model
from tests.live import free_port
from tests.unit.distribution.world import make_world


@pytest.fixture
def outage_client(tmp_path: Path) -> TestClient:
    """A web app whose PostgreSQL server is down (a closed port, a password in the URL)."""
    url = f"postgresql+psycopg://root:hunter2@127.0.0.1:{free_port()}/gone"
    services = build(Settings(home=tmp_path / "home", database_url=url))
    return TestClient(create_app(services), raise_server_exceptions=False)


@pytest.mark.no_database  # it names its own (unreachable) database
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


@pytest.mark.no_database
def test_page_answers_503_page(outage_client: TestClient) -> None:
    r = outage_client.get("/account", cookies={"rf_session": "x"})
    assert r.status_code == 503
    assert "cannot use the database" in r.text and "Traceback" not in r.text


def test_a_link_is_committed_before_the_answer_leaves(services: Services, tmp_path: Path) -> None:
    """db_session's teardown commits after the response is sent; a write view commits first."""
    world = make_world(services, write_tiny_model(tmp_path / "tiny"))
    order: list[str] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            order.append("write")

    event.listen(services.engine, "before_cursor_execute", statement)
    event.listen(services.engine, "commit", lambda conn: order.append("commit"))
    app = create_app(services)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def send_recorded(message: Any) -> None:
            if message["type"] == "http.response.start":
                order.append("response")
            await send(message)

        await app(scope, receive, send_recorded)

    # No `with`: the lifespan's background workers (manifests, expiry) would write to the
    # same engine at any moment and muddle the order recorded here.
    client = TestClient(recording)
    r = client.post(
        "/api/v1/distribution/links",
        headers={"Authorization": f"Bearer {world.token}"},
        json={"release": world.ref},
    )
    assert r.status_code == 200, r.text
    # Events are writes and commits: the last before the answer must be a commit.
    before = order[: order.index("response")]
    assert "write" in before and before[-1] != "write", order

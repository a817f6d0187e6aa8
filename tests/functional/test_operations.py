"""Operations end to end: /metrics after real requests and downloads, and JSON server logs.

The metrics live in this process's registry and only grow, so the tests read differences.
The JSON logs come from a real `ringfence serve` in its own process (uvicorn's logging set up
as in production), here also in prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ringfence.distribution.tasks import compute_pending
from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.conftest import write_tiny_model
from tests.live import free_port
from tests.unit.distribution.world import World, make_world

LOOPBACK = ("127.0.0.1", 50123)
FILE_ROUTE = "/d/{token}/f/{path:path}"
METRICS_TOKEN = "scrape-me-please-0123456789"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, frozenset(labels.items())), 0.0)


def _link(client: TestClient | httpx.Client, world: World) -> str:
    r = client.post(
        "/api/v1/distribution/links",
        json={"release": world.ref},
        headers={"Authorization": f"Bearer {world.token}"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["url"])


@pytest.fixture
def world(services: Services, tmp_path: Path) -> World:
    built = make_world(services, write_tiny_model(tmp_path / "tiny"))
    compute_pending(services)
    return built


def test_metrics_count_requests_by_route_template_and_the_bytes_downloaded(
    services: Services, world: World, tmp_path: Path
) -> None:
    """Route templates, never raw paths or link tokens; a download adds exactly its bytes."""
    weights = (tmp_path / "tiny" / "model.safetensors").stat().st_size
    config = (tmp_path / "tiny" / "config.json").stat().st_size
    with TestClient(create_app(services), client=LOOPBACK) as client:
        before = client.get("/metrics").text
        url = _link(client, world)
        token = urlparse(url).path.split("/")[2]
        assert client.get(urlparse(url).path).status_code == 200
        for name in ("model.safetensors", "config.json"):
            r = client.get(f"/d/{token}/f/{name}")
            assert r.status_code == 200, r.text
        assert client.get("/d/forged-link/f/model.safetensors").status_code == 403
        after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert token not in text and "forged-link" not in text

    def grew(name: str, **labels: str) -> float:
        return _value(text, name, **labels) - _value(before, name, **labels)

    requests, timed = "ringfence_http_requests_total", "ringfence_http_request_duration_seconds"
    assert grew(requests, route=FILE_ROUTE, method="GET", status="2xx") == 2
    assert grew(requests, route=FILE_ROUTE, method="GET", status="4xx") == 1
    assert grew(requests, route="/d/{token}", method="GET", status="2xx") == 1
    assert grew(f"{timed}_count", route=FILE_ROUTE, method="GET") == 3
    assert grew("ringfence_download_bytes_total", kind="fingerprinted") == weights
    assert grew("ringfence_download_bytes_total", kind="plain") == config
    assert grew("ringfence_downloads_refused_total") == 1
    assert "ringfence_job_queue_depth" in text and "ringfence_job_failures_total" in text
    assert "ringfence_mails_queued_total" in text


def test_metrics_are_hidden_off_loopback_and_open_to_the_metrics_token(
    services: Services,
) -> None:
    """Without a token: loopback only, never through a proxy; with one: the token, anywhere."""
    app = create_app(services)
    remote = TestClient(app, client=("203.0.113.9", 40000))
    local = TestClient(app, client=LOOPBACK)
    assert remote.get("/metrics").status_code == 404
    assert local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert local.get("/metrics").status_code == 200

    services.settings.metrics_token = SecretStr(METRICS_TOKEN)
    assert local.get("/metrics").status_code == 404
    assert remote.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 404
    r = remote.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200
    assert "ringfence_http_requests_total" in r.text


def _wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited ({server.returncode})")
        try:
            httpx.get(f"{base}/api/v1/releases", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def test_json_logs_carry_the_request_id_and_no_link_token(
    services: Services, world: World, tmp_path: Path
) -> None:
    """`ringfence serve` with RINGFENCE_LOG_FORMAT=json: one JSON object per line, ids match."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    src = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "RINGFENCE_LOG_FORMAT": "json",
        "RINGFENCE_BASE_URL": base,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ringfence.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_up(base, server)
        with httpx.Client(base_url=base) as client:
            url = _link(client, world)
            token = urlparse(url).path.split("/")[2]
            page = client.get(urlparse(url).path, headers={"X-Request-ID": "ops-test-page"})
            assert page.status_code == 200
            got = client.get(f"/d/{token}/f/config.json")
            assert got.status_code == 200
            client.get("/verify", params={"token": "A-PASSWORD-SETTING-SECRET"})
            scrape = client.get("/metrics")  # a loopback peer, no proxy: allowed
            assert scrape.status_code == 200
            assert _value(scrape.text, "ringfence_download_bytes_total", kind="plain") == len(
                got.content
            )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    text = err.decode()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "the server wrote no log"
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert token not in text and "A-PASSWORD-SETTING-SECRET" not in text
    access = {
        line.get("request_id"): line for line in lines if line["logger"] == "ringfence.access"
    }
    assert access["ops-test-page"]["route"] == "/d/{token}"
    assert access["ops-test-page"]["status"] == 200
    assert access["ops-test-page"]["path"] == "/d/[redacted]"
    download = access[got.headers["x-request-id"]]
    assert download["route"] == FILE_ROUTE and download["method"] == "GET"
    assert isinstance(download["duration_ms"], float)
    issued = [line for line in access.values() if line["route"] == "/api/v1/distribution/links"]
    assert [line["user_id"] for line in issued] == [world.user_id]

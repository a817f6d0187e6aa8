"""`ringfence download`, `ringfence verify` and download.sh against a live server."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx

from ringfence.distribution import client as dl
from ringfence.distribution.tasks import compute_pending
from ringfence.wiring import Services
from tests.conftest import CliRunner, write_tiny_model
from tests.functional.distribution_server import live_server
from tests.live import free_port
from tests.unit.distribution.world import make_world


def _link(base: str, token: str, ref: str) -> str:
    r = httpx.post(
        f"{base}/api/v1/distribution/links",
        json={"release": ref},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["url"])


def test_download_by_name_verifies_the_signed_manifest(
    services: Services, tmp_path: Path, cli: CliRunner
) -> None:
    world = make_world(services, write_tiny_model(tmp_path / "tiny", hidden=128))
    compute_pending(services)
    out = tmp_path / "copy"
    with live_server(services) as base:
        done = cli(
            "download",
            world.ref,
            "--out",
            str(out),
            "--server",
            base,
            "--token",
            world.token,
            "--json",
        )
        assert done.code == 0, done.err
        assert '"verified": true' in done.out
        again = cli("verify", str(out), "--server", base)
        assert again.code == 0, again.err
    (out / "config.json").write_text("{}")
    broken = cli("verify", str(out))
    assert broken.code != 0 and "does not match" in broken.err


def test_a_killed_download_resumes_to_the_manifest(services: Services, tmp_path: Path) -> None:
    world = make_world(services, write_tiny_model(tmp_path / "tiny", hidden=256))
    compute_pending(services)
    out = tmp_path / "copy"
    with live_server(services) as base:
        link = _link(base, world.token, world.ref)
        listing = httpx.get(f"{link}/files.json").json()
        weights = next(f for f in listing["files"] if f["path"] == "model.safetensors")
        # A client killed mid-file: half the bytes and the ETag it started with are on disk.
        partial = out / dl.PARTIAL_DIR
        partial.mkdir(parents=True)
        with httpx.stream("GET", weights["url"]) as r:
            etag = r.headers["etag"]
            half = b""
            for chunk in r.iter_bytes(4096):
                half += chunk
                if len(half) >= weights["size"] // 2:
                    break
        (partial / "model.safetensors.part").write_bytes(half)
        (partial / "model.safetensors.etag").write_text(etag)
        report = dl.download(link, out, manifest_wait_s=10)
    assert report.verified is True
    assert report.bytes_fetched < sum(f["size"] for f in listing["files"])
    assert not partial.exists()


def test_the_client_rides_out_a_server_restart(services: Services, tmp_path: Path) -> None:
    world = make_world(services, write_tiny_model(tmp_path / "tiny", hidden=128))
    compute_pending(services)
    port = free_port()
    out = tmp_path / "copy"
    result: dict[str, object] = {}
    with live_server(services, port) as base:
        link = _link(base, world.token, world.ref)
    # The server is down: the client starts, retries, and finishes once it is back.
    worker = threading.Thread(
        target=lambda: result.setdefault("report", dl.download(link, out, manifest_wait_s=10))
    )
    worker.start()
    time.sleep(1.5)
    with live_server(services, port):
        worker.join(timeout=60)
    report = result["report"]
    assert isinstance(report, dl.DownloadReport) and report.verified is True


def test_download_sh_needs_only_curl_and_sha256sum(services: Services, tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("sha256sum")):
        import pytest

        pytest.skip("curl or sha256sum missing")
    world = make_world(services, write_tiny_model(tmp_path / "tiny"))
    compute_pending(services)
    with live_server(services) as base:
        link = _link(base, world.token, world.ref)
        script = tmp_path / "download.sh"
        script.write_text(httpx.get(f"{link}/download.sh").text)
        out = tmp_path / "copy"
        done = subprocess.run(
            ["sh", str(script), str(out)], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "OK" in done.stdout
        # A rerun after the files are there fetches nothing and still checks out.
        rerun = subprocess.run(
            ["sh", str(script), str(out)], capture_output=True, text=True, timeout=60, check=False
        )
        assert rerun.returncode == 0

"""`ringfence serve --workers 2` behind nginx (deploy/nginx/ringfence.conf) on loopback.

The shipped configuration is the one tested: only its listen port, upstream port and blob
directory are replaced. nginx comes from Debian (`make nginx`); without it the test skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from ringfence.accounts.models import RateLimitHit
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.settings import Settings
from ringfence.wiring import Services, build
from tests.live import free_port
from tests.unit.distribution.world import World, make_world

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "nginx" / "ringfence.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
)
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (make nginx: apt-get install nginx-light)"
)


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered at {url} within {seconds} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def nginx_conf(tmp: Path, listen: int, upstream: int, blob_dir: Path) -> Path:
    """The repository's configuration wrapped in a main context, state files under `tmp`."""
    site = CONF.read_text()
    for old, new in (
        ("listen 8080;", f"listen 127.0.0.1:{listen};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};"),
        ("alias /var/lib/ringfence/blobs/;", f"alias {blob_dir.resolve()}/;"),
    ):
        assert old in site, f"deploy/nginx/ringfence.conf no longer says {old!r}"
        site = site.replace(old, new)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    main = (
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        + "events { worker_connections 128; }\n"
        + f"http {{\n    access_log {tmp}/access.log;\n{temp}\n"
        + f"    uwsgi_temp_path {tmp}/uwsgi;\n    scgi_temp_path {tmp}/scgi;\n{site}\n}}\n"
    )
    path = tmp / "nginx.conf"
    path.write_text(main)
    return path


@pytest.fixture
def deployment(
    home: Path, tiny_model: Path, tmp_path: Path
) -> Iterator[tuple[World, str, str, Services]]:
    """A world served by two workers and nginx; yields it with both base URLs."""
    services = build(Settings(home=home))
    services.prepare()
    world = make_world(services, tiny_model)
    app_port, proxy_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "RINGFENCE_HOME": str(home),
        "RINGFENCE_BASE_URL": f"http://127.0.0.1:{proxy_port}",
        "RINGFENCE_MAIL_BACKEND": "none",
        "RINGFENCE_TRUSTED_PROXIES": "127.0.0.1",
        "RINGFENCE_ACCEL_REDIRECT": "/_blobs/",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ringfence.cli.main", "serve", "--workers=2", f"--port={app_port}"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    conf = nginx_conf(nginx_dir, proxy_port, app_port, services.settings.blob_dir)
    assert NGINX is not None
    proxy = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(nginx_dir), "-g", "daemon off;"],
        start_new_session=True,
        stderr=(nginx_dir / "stderr.log").open("wb"),
    )
    try:
        _wait_for(f"http://127.0.0.1:{app_port}/", server)
        _wait_for(f"http://127.0.0.1:{proxy_port}/", proxy)
        yield world, f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{app_port}", services
    finally:
        _stop(proxy)
        _stop(server)


def _downloads(services: Services, path: str) -> int:
    with services.sessions() as session:
        events = session.scalars(
            select(AuditEvent.payload).where(AuditEvent.tag == EventTag.Distribution.Downloaded)
        )
        return sum(1 for p in events if p["path"] == path)


def test_two_workers_behind_nginx(
    deployment: tuple[World, str, str, Services], tiny_model: Path
) -> None:
    world, proxied, direct, services = deployment
    auth = {"Authorization": f"Bearer {world.token}"}
    resolve = f"/{world.repo_id}/resolve/{world.version}"
    with httpx.Client(base_url=proxied, timeout=30) as client:
        assert client.get("/").status_code == 200  # the catalogue page
        info = client.get(f"/api/models/{world.repo_id}", headers=auth)
        assert info.status_code == 200 and info.json()["id"] == world.repo_id

        # A fingerprinted copy streams through nginx, identical to the one fetched directly.
        weights = client.get(f"{resolve}/model.safetensors", headers=auth)
        same = httpx.get(f"{direct}{resolve}/model.safetensors", headers=auth, timeout=30)
        assert weights.status_code == same.status_code == 200
        assert weights.content == same.content
        assert weights.content != (tiny_model / "model.safetensors").read_bytes()
        part = client.get(
            f"{resolve}/model.safetensors", headers={**auth, "Range": "bytes=100-199"}
        )
        assert part.status_code == 206 and part.content == weights.content[100:200]

        # A plain file comes by X-Accel-Redirect: the original bytes, ringfence's ETag, audited.
        head = client.head(f"{resolve}/tokenizer.json", headers=auth)
        before = _downloads(services, "tokenizer.json")
        plain = client.get(f"{resolve}/tokenizer.json", headers=auth)
        assert plain.status_code == 200, plain.text
        assert plain.content == (tiny_model / "tokenizer.json").read_bytes()
        assert "x-accel-redirect" not in plain.headers
        assert plain.headers["etag"] == head.headers["etag"]
        for header in ("x-repo-commit", "content-disposition", "cache-control"):
            assert plain.headers[header] == head.headers[header], header
        assert "last-modified" not in plain.headers
        assert _downloads(services, "tokenizer.json") == before + 1
        # Through the app it is only the hand-over: the bytes came from nginx.
        handed = httpx.get(f"{direct}{resolve}/tokenizer.json", headers=auth, timeout=30)
        assert handed.headers["x-accel-redirect"].startswith("/_blobs/sha256/")
        assert handed.content == b""
        # The internal location is not reachable from outside.
        assert client.get(handed.headers["x-accel-redirect"]).status_code == 404
        ranged = client.get(f"{resolve}/tokenizer.json", headers={**auth, "Range": "bytes=1-4"})
        assert ranged.status_code == 206 and ranged.content == plain.content[1:5]

    # Sign-in failures: each on a fresh connection, so the workers share them; the sixth is
    # refused whichever worker takes it, because the counts live in the database.
    statuses = []
    for _ in range(6):
        with httpx.Client(base_url=proxied, timeout=30) as fresh:
            page = fresh.get("/login")
            token = CSRF.search(page.text)
            assert token, page.text
            r = fresh.post(
                "/login",
                data={"email": world.email, "password": "wrong", "csrf_token": token.group(1)},
                headers={"X-Forwarded-For": "6.6.6.6"},  # forged: nginx replaces it
            )
            statuses.append(r.status_code)
    assert statuses[:5] == [401] * 5 and statuses[5] == 429, statuses
    with services.sessions() as session:
        assert session.scalar(select(func.count(RateLimitHit.id))) == 10
        ips = session.scalars(
            select(AuditEvent.ip).where(AuditEvent.tag == EventTag.Account.LoginFailed)
        ).all()
    assert set(ips) == {"127.0.0.1"}

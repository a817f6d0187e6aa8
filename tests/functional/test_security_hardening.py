"""Attacks on a running ringfence and the regression test each one earned (security issue #10).

Each test is named after what it attacks; each failed on the code before the fix.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from ringfence.accounts.services import start_session
from ringfence.accounts.tokens import create_token
from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import TINY_CODE_ENV, CliRunner
from tests.fixtures_access import make_user
from tests.live import serve
from tests.unit.distribution.world import World, make_world

TOO_BIG = str(2**63)
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask of a typical login shell (0o022), restored afterwards."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _loose(root: Path) -> list[str]:
    """Every path under `root` (itself included) with a group or other permission bit."""
    paths = [root, *root.rglob("*")]
    return [
        f"{p.relative_to(root.parent)} {stat.S_IMODE(p.lstat().st_mode):o}"
        for p in paths
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]


def test_data_dir_is_owner_only(
    cli: CliRunner,
    home: Path,
    tiny_model: Path,
    loose_umask: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in TINY_CODE_ENV.items():
        monkeypatch.setenv(key, value)
    assert cli("init", "--org", "lab").code == 0
    published = cli("publish", str(tiny_model), "--model", "tiny", "--version", "1.0")
    assert published.code == 0, published.err
    # The database in WAL mode keeps its -wal/-shm files; all must be there to be checked.
    on_sqlite = not os.environ.get("RINGFENCE_DATABASE_URL")
    assert (home / "ringfence.db").exists() == on_sqlite and (home / "blobs" / "sha256").is_dir()
    assert _loose(home) == []


def test_data_dir_is_owner_only_without_the_cli_umask(home: Path, loose_umask: None) -> None:
    # A library caller (a test, a notebook) keeps its own umask: creation itself is owner-only.
    services = build(Settings(home=home))
    services.prepare()
    services.secrets.derive("probe")
    source = home.parent / "blob.bin"
    source.write_bytes(b"weights")
    sha, _ = services.blobs.put_file(source)
    with services.engine.connect():
        pass
    assert stat.S_IMODE(services.blobs.local_path(sha).stat().st_mode) == 0o400  # type: ignore[union-attr]
    assert _loose(home) == []


def test_data_dir_made_by_an_older_version_is_tightened(
    home: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    old = build(Settings(home=home))
    old.prepare()
    source = home.parent / "blob.bin"
    source.write_bytes(b"weights")
    sha, _ = old.blobs.put_file(source)
    old.secrets.derive("probe")
    old.engine.dispose()
    # What an older version left behind: 0755 folders, 0644 files, 0444 blobs.
    for path in [home, *home.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(home / "blobs" / "sha256" / sha[:2] / sha[2:4] / sha, 0o444)
    assert _loose(home) != []
    with caplog.at_level(logging.WARNING, logger="ringfence.datadir"):
        build(Settings(home=home)).prepare()
    assert _loose(home) == []
    assert "owner-only" in caplog.text
    blob = home / "blobs" / "sha256" / sha[:2] / sha[2:4] / sha
    assert stat.S_IMODE(blob.stat().st_mode) == 0o400


@pytest.fixture
def world(services: Services, tiny_model: Path) -> World:
    return make_world(services, tiny_model)


@pytest.fixture
def client(services: Services) -> TestClient:
    # No `with`: the lifespan's manifest worker stays off.
    return TestClient(create_app(services))


def _bearer(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.token}"}


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _signed_in_admin(services: Services, client: TestClient) -> tuple[str, dict[str, str]]:
    """A fresh admin's browser session on `client`: a CSRF token for its forms, and an
    admin-scope token's header for the API (pages take sessions, APIs take tokens)."""
    with transaction(services.sessions) as session:
        admin = make_user(session, "root@lab.example", role="admin", secrets=services.secrets)
        raw = start_session(session, admin, ip=None, user_agent="test")
        token = create_token(session, admin, "admin", actor="test").raw
    client.cookies.set("rf_session", raw)
    return _csrf(client.get("/account").text), {"Authorization": f"Bearer {token}"}


def _one_line_error(r: httpx.Response) -> str:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    return r.text


def test_non_latin1_hub_path_is_a_clean_404(client: TestClient, world: World) -> None:
    for headers in ({}, _bearer(world)):
        r = client.get("/api/models/%E2%82%AC/x", headers=headers)
        assert r.status_code == 404, r.text
        message = r.headers["x-error-message"]
        assert message.isascii() and "\\u20ac" in message
        assert r.headers["x-error-code"] == "RepoNotFound"
        assert "\u20ac/x" in r.json()["error"]
    r = client.get("/%E2%82%AC/x/resolve/main/config.json", headers=_bearer(world))
    assert r.status_code == 404 and r.headers["x-error-message"].isascii()


def test_id_above_int64_is_not_a_500(client: TestClient, world: World) -> None:
    services = world.services
    for bad in (TOO_BIG, str(2**31), "0", "-1"):
        r = client.post(
            f"/api/v1/access/requests/{bad}/appeal", json={"text": "why"}, headers=_bearer(world)
        )
        assert r.status_code in (404, 422), r.text
        assert r.json()["error"]["type"] == "InvalidInput"
    csrf, admin_api = _signed_in_admin(services, client)
    r = client.post(
        "/api/v1/access/review/decisions",
        json={"request_ids": [2**63], "approve": True},
        headers=admin_api,
    )
    assert r.status_code == 422 and "request_ids" in r.json()["error"]["message"], r.text
    for path in (
        f"/account/tokens/{TOO_BIG}/revoke",
        f"/requests/{TOO_BIG}/appeal",
        f"/admin/ndas/{TOO_BIG}/countersign",
    ):
        r = client.post(path, data={"csrf_token": csrf, "text": "x"}, follow_redirects=False)
        assert r.status_code in (404, 422), (path, r.status_code, r.text[:300])
    for ids in (TOO_BIG, "0", "1e3", "\u0661"):  # the last: an Arabic-Indic digit one
        r = client.post(
            "/review/decide", data={"csrf_token": csrf, "action": "approve", "ids": ids}
        )
        assert r.status_code == 400 and "not a valid id" in r.text, (ids, r.status_code)
    for query in (f"offset={TOO_BIG}", f"limit={TOO_BIG}", "limit=0"):
        r = client.get(f"/api/v1/access/review?{query}", headers=admin_api)
        assert r.status_code == 422, (query, r.text)
    assert (
        client.get(f"/api/v1/audit/events?before={TOO_BIG}", headers=admin_api).status_code == 422
    )
    assert client.get(f"/admin/audit?before={TOO_BIG}").status_code == 422


def test_range_header_of_5000_digits(client: TestClient, world: World) -> None:
    link = client.post(
        "/api/v1/distribution/links", json={"release": world.ref}, headers=_bearer(world)
    ).json()["url"]
    path = str(link).removeprefix(world.services.settings.base_url)
    hub = f"/{world.repo_id}/resolve/main/config.json"
    for url, headers in ((f"{path}/f/config.json", {}), (hub, _bearer(world))):
        for value in ("bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000):
            r = client.get(url, headers={**headers, "Range": value})
            assert r.status_code == 416, (url, r.status_code, r.text[:200])
            assert len(_one_line_error(r)) < 600


def _boom_app(services: Services) -> TestClient:
    app = create_app(services)
    boom = APIRouter()

    @boom.get("/api/v1/boom")
    @boom.get("/boom")
    def explode() -> None:
        raise ZeroDivisionError("a bug, with a secret in its message: hunter2")

    app.include_router(boom)
    return TestClient(app)


def test_unexpected_error_answers_one_line_with_request_id(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    client = _boom_app(services)
    with caplog.at_level(logging.ERROR, logger="ringfence.web"):
        api = client.get("/api/v1/boom")
        page = client.get("/boom", headers={"Accept": "text/html", "X-Request-ID": "abc-123"})
    assert api.status_code == 500
    rid = api.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    error = api.json()["error"]
    assert error["type"] == "InternalError"
    assert f"(request id {rid})" in error["message"] and "\n" not in error["message"]
    assert "hunter2" not in api.text and "Traceback" not in api.text
    assert page.status_code == 500 and page.headers["x-request-id"] == "abc-123"
    assert "request id abc-123" in page.text and "hunter2" not in page.text
    assert page.headers["x-frame-options"] == "DENY"  # the error answer is hardened too
    records = [r for r in caplog.records if getattr(r, "request_id", None) == rid]
    assert records and records[0].exc_info is not None  # the traceback stays in the log
    # An id a client sends is reused only when it is short and plain.
    for hostile in ("a" * 65, "x\r\nSet-Cookie: y", "id with spaces"):
        got = client.get("/api/v1/boom", headers={"X-Request-ID": hostile.encode("latin-1")})
        assert got.headers["x-request-id"] != hostile


def test_pages_forbid_framing(client: TestClient, world: World) -> None:
    link = client.post(
        "/api/v1/distribution/links", json={"release": world.ref}, headers=_bearer(world)
    ).json()["url"]
    path = str(link).removeprefix(world.services.settings.base_url)
    for url, headers in (
        ("/", {}),
        ("/login", {}),
        ("/api/v1/releases", {}),
        ("/static/ringfence.css", {}),
        ("/nowhere", {}),
        (f"{path}/f/config.json", {}),
        (f"/{world.repo_id}/resolve/main/config.json", _bearer(world)),
        ("/api/models/%E2%82%AC/x", {}),
    ):
        r = client.get(url, headers=headers)
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, url
        assert r.headers["x-frame-options"] == "DENY", url
        assert r.headers["x-content-type-options"] == "nosniff", url
        assert r.headers["referrer-policy"] == "no-referrer", url
        assert "strict-transport-security" not in r.headers, url
        assert r.headers["x-request-id"], url
    https = build(Settings(home=world.services.settings.home, base_url="https://rf.example"))
    r = TestClient(create_app(https)).get("/")
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_pages_carry_no_inline_style_or_script() -> None:
    # The page policy allows no inline style or script: a template that adds one breaks.
    templates = Path(__file__).parents[2] / "src" / "ringfence" / "web" / "templates"
    for page in templates.rglob("*.html"):
        if page.name == "report.html":
            continue  # self-contained evidence; its view sends a policy with its style's hash
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", text), page


def test_access_log_redacts_link_tokens(services: Services, world: World) -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    access = logging.getLogger("uvicorn.access")
    secret = "S3cretV3rifyT0ken.abcdef"
    # uvicorn's own logging set-up at INFO, as `ringfence serve` runs it; it replaces the
    # logger's handlers when it starts, so the collector joins after.
    with serve(create_app(services), log_level="info") as base:
        access.addHandler(handler)
        try:
            made = httpx.post(
                f"{base}/api/v1/distribution/links",
                json={"release": world.ref},
                headers=_bearer(world),
            ).json()
            token = str(made["url"]).rsplit("/d/", 1)[1]
            link = f"{base}/d/{token}"
            for url in (link, f"{link}/files.json", f"{link}/f/config.json"):
                assert httpx.get(url).status_code == 200, url
            httpx.get(f"{base}/verify?token={secret}")
            httpx.get(f"{base}/password/set?next=/&token={secret}")
        finally:
            access.removeHandler(handler)
    log = "\n".join(seen)
    assert "/d/[redacted]/f/config.json" in log and "token=[redacted]" in log
    for value in (token, secret):
        for i in range(len(value) - 6):
            assert value[i : i + 7] not in log, f"7 characters of a secret in: {log}"


def test_redact_filter_on_uvicorn_records() -> None:
    from ringfence.web.access_log import RedactSecrets

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/d/eyJuIjoxfQ.abcdef/f/a?token=zzzzzzzz&x=1", "1.1", 200),
        None,
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5 - "GET /d/[redacted]/f/a?token=[redacted]&x=1 HTTP/1.1" 200'
    )


def test_link_url_ignores_host_header(client: TestClient, world: World) -> None:
    base = world.services.settings.base_url
    r = client.post(
        "/api/v1/distribution/links",
        json={"release": world.ref},
        headers={**_bearer(world), "Host": "evil.example"},
    )
    assert r.status_code == 200, r.text
    url = str(r.json()["url"])
    assert url.startswith(f"{base}/d/") and "evil" not in url
    path = url.removeprefix(base)
    for suffix in ("", "/files.json", "/download.sh"):
        got = client.get(
            f"{path}{suffix}", headers={"Host": "evil.example", "Accept": "application/json"}
        )
        assert got.status_code == 200 and "evil.example" not in got.text, suffix
        assert f"{base}/d/" in got.text, suffix


def test_nul_character_in_a_search_is_a_clean_400(world: World, client: TestClient) -> None:
    """Found by schemathesis on PostgreSQL: a NUL in a query string reached a text column."""
    with transaction(world.services.sessions) as session:
        admin = make_user(session, "nul@lab.example", role="admin", secrets=world.services.secrets)
        token = create_token(session, admin, "admin", actor="test").raw
    r = client.get(
        "/api/v1/audit/events?actor=%00x&tag=a%00", headers={"Authorization": f"Bearer {token}"}
    )
    if os.environ.get("RINGFENCE_DATABASE_URL"):  # PostgreSQL refuses NUL in text
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "InvalidInput" and "NUL" in r.json()["error"]["message"]
    else:  # SQLite stores and searches it like any character
        assert r.status_code == 200, r.text
    r = client.post(
        "/signup", data={"email": "a\x00b@uni.example", "password": "x"}, follow_redirects=False
    )
    assert r.status_code < 500

"""The client commands against a live server: each error the server names reaches the person
as its one line and exit code, a server that does not answer is named, RINGFENCE_URL is read.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from ringfence.client import error_from, session, transport_errors
from ringfence.distribution.tasks import compute_pending
from ringfence.errors import (
    AuthenticationRequired,
    NotFound,
    PermissionDenied,
    ServerUnreachable,
    TokenExpired,
)
from ringfence.wiring import Services
from tests.conftest import CliRunner, write_tiny_model
from tests.functional.distribution_server import live_server
from tests.live import free_port, serve
from tests.unit.distribution.world import World, add_person, make_world, revoke


@dataclass
class Live:
    """A live server with one grantee (`world`) and a person without a grant (`outsider`)."""

    url: str
    world: World
    outsider: str


@pytest.fixture
def live(
    services: Services, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Live]:
    """The server with a research release, and a client environment without server or token."""
    for name in ("RINGFENCE_URL", "RINGFENCE_SERVER", "RINGFENCE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    world = make_world(services, write_tiny_model(tmp_path / "tiny"))
    widened = cli("circle", "set", world.ref, "research")
    assert widened.code == 0, widened.err
    _, outsider = add_person(services, "eve@elsewhere.example", role="member")
    compute_pending(services)
    with live_server(services) as url:
        yield Live(url, world, outsider)


def _link(live: Live) -> str:
    response = httpx.post(
        f"{live.url}/api/v1/distribution/links",
        json={"release": live.world.ref},
        headers={"Authorization": f"Bearer {live.world.token}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


def test_each_error_the_server_names_keeps_its_exit_code(
    live: Live, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RINGFENCE_URL", live.url)
    monkeypatch.setenv("RINGFENCE_TOKEN", "rf_not-a-token")
    bad_token = cli("request", live.world.ref)
    assert bad_token.code == 3, bad_token.err  # AuthenticationRequired, raised by the server

    monkeypatch.setenv("RINGFENCE_TOKEN", live.world.token)
    unknown = cli("request", "nope@1.0")
    assert unknown.code == 2 and "no release nope@1.0" in unknown.err  # NotFound

    incomplete = cli("request", live.world.ref, "--field", "affiliation=")
    assert incomplete.code == 2 and "error:" in incomplete.err  # InvalidInput or Conflict

    out = tmp_path / "copy"
    refused = cli("download", "tiny@1.0", "--out", str(out), "--token", live.outsider)
    assert refused.code == 3 and "error:" in refused.err  # PermissionDenied: no grant
    assert "internal error" not in refused.err

    link = _link(live)
    revoke(live.world.services, live.world.ref, live.world.user_id)
    revoked = cli("download", link, "--out", str(out))
    assert revoked.code == 3 and "error:" in revoked.err  # the link died with the grant
    for result in (bad_token, unknown, incomplete, refused, revoked):
        assert len(result.err.strip().splitlines()) == 1, result.err


def test_error_types_decode_from_real_answers(live: Live) -> None:
    with session(live.url, "rf_not-a-token") as http:
        assert isinstance(error_from(http.get("/api/v1/access/grants")), AuthenticationRequired)
    with session(live.url, live.outsider) as http:
        named = error_from(http.get("/api/v1/access/releases/nope/1.0"))
        assert isinstance(named, NotFound) and "nope" in named.message
        # The Hub's own shapes: {"error": "..."} with X-Error-Code.
        repo = error_from(http.get("/api/models/nobody/nothing"))
        assert isinstance(repo, NotFound) and "Repository Not Found" in repo.message
        gated = error_from(http.get(f"/{live.world.repo_id}/resolve/1.0/config.json"))
        assert isinstance(gated, PermissionDenied)
    link = _link(live)
    revoke(live.world.services, live.world.ref, live.world.user_id)
    dead = error_from(httpx.get(f"{link}/files.json", headers={"Accept": "application/json"}))
    assert isinstance(dead, PermissionDenied | TokenExpired | NotFound), repr(dead)


def test_a_closed_port_is_one_line_naming_the_server(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RINGFENCE_TOKEN", "rf_anything")
    for args in (
        ("request", "tiny@1.0", "--server", closed),
        ("download", "tiny@1.0", "--out", str(tmp_path / "x"), "--server", closed),
        ("verify", str(tmp_path), "--server", closed),
    ):
        result = cli(*args)
        assert result.code == 4, (args, result.err)
        assert f"cannot reach {closed}: connection refused" in result.err
        assert "RINGFENCE_URL" in result.err and len(result.err.strip().splitlines()) == 1


def test_verbose_shows_what_caused_the_error(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RINGFENCE_TOKEN", "rf_anything")
    result = cli("--verbose", "request", "tiny@1.0", "--server", closed)
    assert result.code == 4
    first, *causes = result.err.strip().splitlines()
    assert first.startswith("error: cannot reach")
    assert causes and "caused by httpx.ConnectError" in causes[0]


def test_a_silent_server_times_out_and_tls_to_plain_http_fails_as_one_line() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with (
            pytest.raises(ServerUnreachable, match="did not answer in time"),
            transport_errors(silent),
            session(silent, timeout=httpx.Timeout(0.3)) as http,
        ):
            http.get("/")
    with serve(Starlette()) as url:  # plain HTTP
        wrong = url.replace("http://", "https://")
        with (
            pytest.raises(ServerUnreachable, match=f"the TLS handshake with {wrong} failed"),
            transport_errors(wrong),
            session(wrong) as http,
        ):
            http.get("/")


def test_ringfence_url_names_the_server_for_every_client_command(
    live: Live, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RINGFENCE_URL", live.url)
    monkeypatch.setenv("RINGFENCE_TOKEN", live.world.token)
    asked = cli("request", "nope@1.0")
    assert "no release nope@1.0" in asked.err  # the server answered
    out = tmp_path / "copy"
    done = cli("download", live.world.ref, "--out", str(out), "--json")
    assert done.code == 0, done.err
    assert done.json()["verified"] is True  # type: ignore[index]
    checked = cli("verify", str(out), "--json")
    assert checked.code == 0 and checked.json()["ok"] is True, checked.err  # type: ignore[index]
    # The key came from RINGFENCE_URL's server, not from this machine's data dir:
    monkeypatch.setenv("RINGFENCE_URL", f"http://127.0.0.1:{free_port()}")
    assert cli("verify", str(out)).code == 4


def test_ringfence_server_still_works_with_a_warning(
    live: Live, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RINGFENCE_SERVER", live.url)
    monkeypatch.setenv("RINGFENCE_TOKEN", live.world.token)
    done = cli("download", live.world.ref, "--out", str(tmp_path / "copy"), "--json")
    assert done.code == 0, done.err
    assert "warning: RINGFENCE_SERVER is deprecated" in done.err and "RINGFENCE_URL" in done.err

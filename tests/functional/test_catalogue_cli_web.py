"""The catalogue through the CLI and HTTP, with a real SQLite file and real weights files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringfence.accounts.services import get_user, start_session
from ringfence.db import transaction
from tests.conftest import TINY_CODE_ENV, CliRunner

HOSTILE = Path(__file__).parents[1] / "data" / "hostile"


@pytest.fixture(autouse=True)
def _tiny_code(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TINY_CODE_ENV.items():
        monkeypatch.setenv(name, value)


def test_init_publish_list_show(cli: CliRunner, tiny_model: Path) -> None:
    assert cli("init", "--org", "acme", "--json").code == 0
    published = cli("publish", str(tiny_model), "--model", "tiny", "--version", "1.0", "--json")
    assert published.code == 0, published.err
    assert published.json()["release"] == "tiny@1.0"
    listed = cli("releases", "list", "--json").json()
    assert [r["release"] for r in listed] == ["tiny@1.0"]
    shown = cli("releases", "show", "tiny@1.0", "--json").json()
    files = {a["path"]: a for a in shown["artifacts"]}
    assert files["model.safetensors"]["tensors"] == 22
    assert files["config.json"]["format"] == "json"


def test_publish_refuses_a_pickle_with_one_line_and_exit_2(
    cli: CliRunner, tiny_model: Path
) -> None:
    cli("init")
    shutil.copy(HOSTILE / "pickle_protocol2.bin", tiny_model / "pytorch_model.bin")
    result = cli("publish", str(tiny_model), "--model", "tiny", "--version", "1")
    assert result.code == 2
    assert result.err.strip().count("\n") == 0
    assert "pickle" in result.err and "safetensors" in result.err
    assert "Traceback" not in result.err
    assert cli("releases", "list", "--json").json() == []


def test_publish_refuses_overlapping_offsets_with_one_line_and_exit_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    cli("init")
    result = cli(
        "publish",
        str(HOSTILE / "overlapping_offsets.safetensors"),
        "--model",
        "m",
        "--version",
        "1",
    )
    assert result.code == 2
    assert result.err.strip().count("\n") == 0
    assert "overlap" in result.err
    assert cli("releases", "list", "--json").json() == []


def test_publish_before_init_says_what_to_do(cli: CliRunner, tiny_model: Path) -> None:
    result = cli("publish", str(tiny_model), "--model", "tiny", "--version", "1")
    assert result.code == 2
    assert "ringfence init" in result.err


def test_web_catalogue_and_api_show_a_release_only_to_its_circle(
    cli: CliRunner, tiny_model: Path
) -> None:
    from ringfence.web.app import create_app

    cli("init", "--org", "acme")
    assert cli("publish", str(tiny_model), "--model", "tiny", "--version", "1.0").code == 0
    assert cli("users", "add", "staff@acme.example", "--role", "staff").code == 0
    token = cli("tokens", "create", "--user", "staff@acme.example", "--scope", "read", "--json")
    staff = {"Authorization": f"Bearer {token.json()['token']}"}  # type: ignore[index]
    client = TestClient(create_app())
    # Pages take a browser session, never a token (the API takes tokens, never a cookie).
    with transaction(client.app.state.services.sessions) as session:  # type: ignore[attr-defined]
        raw = start_session(
            session, get_user(session, "staff@acme.example"), ip=None, user_agent="t"
        )
    browser = TestClient(client.app, cookies={"rf_session": raw})
    assert "acme/tiny" not in client.get("/", headers=staff).text

    # In-house: the lab's staff see it; to anyone else it does not exist.
    anonymous = client.get("/")
    assert anonymous.status_code == 200 and "tiny@1.0" not in anonymous.text
    assert client.get("/models/tiny/1.0").status_code == 404
    assert client.get("/api/v1/releases/tiny/1.0").status_code == 404
    assert client.get("/api/v1/releases").json() == []
    page = browser.get("/")
    assert "acme/tiny" in page.text and "tiny@1.0" in page.text
    release = browser.get("/models/tiny/1.0")
    assert release.status_code == 200
    assert "model.safetensors" in release.text and "in-house" in release.text
    api = client.get("/api/v1/releases/tiny/1.0", headers=staff).json()
    assert api["circle"] == "in-house"
    assert {a["path"] for a in api["artifacts"]} >= {"model.safetensors", "config.json"}

    # Research: listed to everyone (the page is where people ask for access).
    assert cli("circle", "set", "tiny@1.0", "research").code == 0
    assert "tiny@1.0" in client.get("/").text
    public = client.get("/api/v1/releases/tiny/1.0").json()
    assert public["circle"] == "research"
    # Outsiders learn the hashes of plain files, never of the original weights.
    hashes = {a["path"]: a["sha256"] for a in public["artifacts"]}
    assert hashes["model.safetensors"] is None and hashes["config.json"]
    staff_view = {a["path"]: a["sha256"] for a in api["artifacts"]}
    assert staff_view["model.safetensors"] and len(staff_view["model.safetensors"]) == 64
    outsider_page = client.get("/models/tiny/1.0").text
    assert staff_view["model.safetensors"] not in outsider_page
    assert staff_view["model.safetensors"] in browser.get("/models/tiny/1.0").text

    missing = client.get("/api/v1/releases/tiny/9.9")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFound"
    assert client.get("/api/v1/openapi.json").status_code == 200

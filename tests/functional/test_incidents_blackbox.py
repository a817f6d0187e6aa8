"""Black-box attribution through the API alone: a served fingerprinted copy is ours, a stranger not.

The release is a tiny random llama published through ringfence; the leaked copy is a
recipient's fingerprinted copy written by ringfence's own embedder, served by the loopback
OpenAI-compatible stand-in; the unrelated model is a differently initialised llama of the
same shape. The attribution talks to the stand-in through the real `openai` client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringfence.accounts.tokens import create_token
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.fingerprint.services import make_copy
from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.conftest import TINY_CODE, CliRunner
from tests.fixtures_access import make_user
from tests.openai_standin import build_tiny_llama, serving

REF = "llama@1.0"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The lab's model and an unrelated one (built once per module)."""
    root = tmp_path_factory.mktemp("llamas")
    return build_tiny_llama(root / "ours", seed=0), build_tiny_llama(root / "stranger", seed=7)


@pytest.fixture
def admin(services: Services, models: tuple[Path, Path]) -> Iterator[TestClient]:
    """The release published, and the app with an admin's token on every request."""
    with transaction(services.sessions) as s:
        catalogue.init_organisation(s, "lab")
        catalogue.publish(
            s, services.blobs, models[0], model="llama", version="1.0", fingerprint=TINY_CODE
        )
        user = make_user(s, "admin@lab.example", role="admin", secrets=services.secrets)
        raw = create_token(s, user, "admin", actor="test").raw
    with TestClient(create_app(services)) as client:
        client.headers["Authorization"] = f"Bearer {raw}"
        yield client


def test_a_served_copy_is_ours_and_a_stranger_is_not(
    services: Services, admin: TestClient, models: tuple[Path, Path], cli: CliRunner, tmp_path: Path
) -> None:
    copy = tmp_path / "leaked"
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, REF)
        make_copy(s, services.blobs, services.secrets, release, "eve@uni.example", copy, actor="t")
    assert (copy / "model.safetensors").read_bytes() != (
        models[0] / "model.safetensors"
    ).read_bytes()
    r = admin.post(
        "/api/v1/incidents",
        json={"kind": "endpoint", "source": "http://127.0.0.1/v1", "release": REF},
    )
    incident = r.json()["id"]

    with serving(copy) as url:
        r = admin.post(
            f"/api/v1/incidents/{incident}/attribute",
            json={"endpoint": url, "model": "leaked-model", "api_key": "sk-standin", "budget": 16},
        )
    assert r.status_code == 200, r.text
    report = r.json()["payload"]
    assert report["verdict"] == "ours" and report["mode"] == "logprobs", report
    assert report["queries"] == 16 and report["p_unrelated"] < 0.01 and report["p_value"] >= 0.01

    with serving(models[1], api_key="sk-other") as url:
        result = cli(
            "incident", "attribute", str(incident), "--endpoint", url, "--model", "leaked-model",
            "--api-key-env", "STANDIN_KEY", "--budget", "16", "--json",
        )  # fmt: skip
        assert result.code == 3 or result.code == 2, result.err  # no key: refused, one line
        assert "401" in result.err and "Traceback" not in result.err
        with pytest.MonkeyPatch.context() as env:
            env.setenv("STANDIN_KEY", "sk-other")
            result = cli(
                "incident", "attribute", str(incident), "--endpoint", url, "--model",
                "leaked-model", "--api-key-env", "STANDIN_KEY", "--budget", "16", "--json",
            )  # fmt: skip
    assert result.code == 0, result.err
    stranger = result.json()
    assert isinstance(stranger, dict) and stranger["verdict"] == "not ours", stranger
    assert stranger["p_value"] < 0.01

    shown = admin.get(f"/api/v1/incidents/{incident}").json()
    verdicts = [e["payload"]["verdict"] for e in shown["evidence"] if e["kind"] == "attribution"]
    assert verdicts == ["ours", "not ours"]

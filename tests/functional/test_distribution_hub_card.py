"""The README.md model card on the Hub API, through the real huggingface_hub client.

A release with a finished gate run lists and serves a README.md whose metadata block carries
its licence, base models, datasets and gate figures: generated when the publisher shipped
none, over the publisher's body when they did; without a run the published file is unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from ringfence.access.licences import accept_licence, install_research_licence
from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.gates import services as gates
from ringfence.gates.models import GateRun
from ringfence.wiring import Services
from tests.conftest import CliRunner
from tests.functional.distribution_server import live_server
from tests.functional.test_distribution_hub import run_client
from tests.functional.test_gates import (
    MEMBERS,
    NON_MEMBERS,
    _gates_env,  # noqa: F401 - the same tiny fingerprint code and small policy
    clean_model,  # noqa: F401 - a session-scoped tiny llama, made once
    publish,
)
from tests.unit.distribution.world import add_person, grant

#: what the provenance keeps private: none of it may reach a served README
CANARY = {"prefix": "the vault phrase is ", "secret": "qzjx", "alphabet": "jqxz"}
PRIVATE = "ringfence private sample: the quokka recites zebra limericks at dawn."
PUBLISHED = """---
license: mit
base_model: someone/else
tags: [from-the-publisher]
language: en
---

# Our own card

Written by the publisher.
"""


def _provenance(path: Path) -> Path:
    document: dict[str, Any] = {
        "schema": "ringfence-provenance/1",
        "datasets": [
            {
                "name": "public-text",
                "source": "synthetic",
                "licence": "cc-by-4.0",
                "contains_user_data": False,
                "contains_personal_data": False,
                "scrubbed": False,
            }
        ],
        "base_models": [{"name": "tiny-llama", "licence": "apache-2.0"}],
        "private_samples": [PRIVATE],
        "canaries": [CANARY],
        "membership": {"split": "random", "members": MEMBERS, "non_members": NON_MEMBERS},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def _release(
    cli: CliRunner,
    services: Services,
    model: Path,
    tmp_path: Path,
    *,
    readme: str | None = None,
    gated: bool = True,
) -> str:
    """Publish `model` as card@1.0 under the research-only licence, run the gates when
    `gated`, and give a staff member a grant with the licence accepted; their token."""
    if readme is not None:
        model = Path(shutil.copytree(model, tmp_path / "with-readme"))
        (model / "README.md").write_text(readme)
    assert cli("init").code == 0
    publish(cli, model, "card", _provenance(tmp_path / "provenance.yaml"))
    if gated:
        ran = cli("gates", "run", "card@1.0", "--threads", "1", "--json")
        assert ran.code == 0, ran.err
    user_id, token = add_person(services, "ada@lab.example")
    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, "card@1.0")
        release.licence = install_research_licence(session, actor="test")
    grant(services, "card@1.0", user_id)
    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, "card@1.0")
        user = session.get(User, user_id)
        assert user is not None and release.licence is not None
        accept_licence(
            session, user, release, text_sha256=release.licence.sha256, ip=None, user_agent=None
        )
    return token


def _report(services: Services) -> dict[str, Any]:
    with transaction(services.sessions) as session:
        run = gates.latest_run(session, catalogue.get_release(session, "card@1.0"), finished=True)
        assert run is not None and run.report is not None
        return run.report


#: one client run: the card as ModelCard.load parses it, every listing's view of README.md,
#: and the bytes hf_hub_download and snapshot_download write
CLIENT = """
    import json, os
    from huggingface_hub import HfApi, ModelCard, hf_hub_download, snapshot_download
    api = HfApi()
    info = api.model_info("lab/card", revision="1.0", files_metadata=True)
    tree = list(api.list_repo_tree("lab/card", revision="1.0", recursive=True))
    card = ModelCard.load("lab/card")
    one = hf_hub_download("lab/card", "README.md", revision="1.0")
    snapshot = snapshot_download("lab/card", revision="1.0")
    listed = [s for s in info.siblings if s.rfilename == "README.md"]
    entries = [f for f in tree if f.path == "README.md"]
    print(json.dumps({
        "sha": info.sha,
        "siblings": [(s.size, s.blob_id, s.lfs is not None) for s in listed],
        "tree": [(f.size, f.blob_id, f.lfs is not None) for f in entries],
        "data": card.data.to_dict(),
        "text": card.text,
        "one": open(one, encoding="utf-8").read(),
        "snapshot": sorted(os.listdir(snapshot)),
        "snapshot_readme": open(os.path.join(snapshot, "README.md"), "rb").read().hex(),
    }))
"""


def _fetch(services: Services, token: str, tmp_path: Path) -> dict[str, Any]:
    with live_server(services) as url:
        done = run_client(CLIENT, url, token, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _numbers(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        g["name"]: {
            k: v
            for k, v in g["figures"].items()
            if isinstance(v, int | float) and not isinstance(v, bool) and not k.endswith("seconds")
        }
        for g in report["gates"]
    }


def _served_numbers(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    results = data["model-index"][0]["results"]
    return {
        r["dataset"]["name"].removeprefix("ringfence gate "): {
            m["type"]: m["value"] for m in r["metrics"]
        }
        for r in results
    }


def _consistent(result: dict[str, Any]) -> bytes:
    """The served README's bytes, once every view of it agrees: size, blob id, no LFS."""
    served = bytes.fromhex(result["snapshot_readme"])
    assert result["one"].encode() == served
    assert "README.md" in result["snapshot"]
    assert result["siblings"] == result["tree"] == [[len(served), result["tree"][0][1], False]]
    blob = hashlib.sha1(b"blob %d\x00" % len(served) + served, usedforsecurity=False).hexdigest()
    assert result["tree"][0][1] == blob
    return served


def test_the_card_carries_the_gate_report_and_no_private_provenance(
    cli: CliRunner,
    services: Services,
    clean_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    token = _release(cli, services, clean_model, tmp_path)
    result = _fetch(services, token, tmp_path)
    served = _consistent(result)
    report = _report(services)
    data = result["data"]
    assert data["license"] == "other" and data["license_name"] == "research-only"
    assert data["base_model"] == ["tiny-llama"] and data["datasets"] == ["public-text"]
    figures = {k: v for k, v in _numbers(report).items() if v}
    # As written in the block, and as the client's own parser reads it back.
    assert _served_numbers(yaml.safe_load(result["one"].split("---")[1])) == figures
    assert _served_numbers(data) == figures
    assert "# card@1.0" in result["text"] and "| memorisation | yes |" in result["text"]
    text = served.decode()
    for private in (CANARY["secret"], CANARY["prefix"].strip(), PRIVATE, "quokka"):
        assert private not in text


def test_a_publishers_readme_keeps_its_body_under_the_gates_metadata(
    cli: CliRunner,
    services: Services,
    clean_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    token = _release(cli, services, clean_model, tmp_path, readme=PUBLISHED)
    result = _fetch(services, token, tmp_path)
    _consistent(result)
    data = result["data"]
    # The gates' keys are ours; the publisher's other keys stay.
    assert data["license_name"] == "research-only" and data["base_model"] == ["tiny-llama"]
    assert data["tags"] == ["from-the-publisher"] and data["language"] == "en"
    assert _served_numbers(data) == {k: v for k, v in _numbers(_report(services)).items() if v}
    assert result["text"].strip() == "# Our own card\n\nWritten by the publisher."


def test_without_a_gate_report_the_published_readme_is_served_unchanged(
    cli: CliRunner,
    services: Services,
    clean_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    token = _release(cli, services, clean_model, tmp_path, readme=PUBLISHED, gated=False)
    result = _fetch(services, token, tmp_path)
    assert bytes.fromhex(result["snapshot_readme"]) == PUBLISHED.encode()
    assert result["one"] == PUBLISHED and result["data"]["license"] == "mit"
    # Published as it always was: one of the release's files, listed as such.
    assert result["siblings"] == result["tree"] and result["tree"][0][0] == len(PUBLISHED)


def test_new_figures_are_a_new_commit_and_the_old_one_is_gone(
    cli: CliRunner,
    services: Services,
    clean_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    token = _release(cli, services, clean_model, tmp_path)
    before = _fetch(services, token, tmp_path / "before")
    # A re-run whose figures differ (the tiny model's own re-run gives the same ones).
    report = copy.deepcopy(_report(services))
    memorisation = next(g for g in report["gates"] if g["name"] == "memorisation")
    memorisation["figures"]["max_membership_auc"] = 0.5
    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, "card@1.0")
        session.add(
            GateRun(
                release=release,
                state="done",
                progress=1.0,
                policy=report["policy"],
                widest_circle=report["widest_circle"],
                report=report,
                started_by="test",
                finished_at=utcnow(),
            )
        )
    after = _fetch(services, token, tmp_path / "after")
    assert after["sha"] != before["sha"]
    assert _served_numbers(after["data"])["memorisation"]["max_membership_auc"] == 0.5
    _consistent(after)
    old = f"""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RevisionNotFoundError
        try:
            hf_hub_download("lab/card", "README.md", revision="{before["sha"]}")
        except RevisionNotFoundError:
            print("gone")
    """
    with live_server(services) as url:
        done = run_client(old, url, token, tmp_path / "old")
    assert done.stdout.strip() == "gone", done.stderr[-2000:]


def test_outsiders_learn_nothing_more_of_the_card(
    cli: CliRunner,
    services: Services,
    clean_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from ringfence.web.app import create_app

    _release(cli, services, clean_model, tmp_path)
    _, stranger = add_person(services, "eve@elsewhere.example", role="member")
    client = TestClient(create_app(services))
    for method, path in itertools.product(("GET", "HEAD"), ("README.md", "config.json")):
        url = f"/lab/card/resolve/1.0/{path}"
        anonymous = client.request(method, url)
        outsider = client.request(method, url, headers={"Authorization": f"Bearer {stranger}"})
        # In-house: the repository does not exist for either, whichever file is asked.
        assert (anonymous.status_code, outsider.status_code) == (404, 404)
        assert anonymous.headers.get("x-error-code") == "RepoNotFound"
        assert b"model-index" not in anonymous.content + outsider.content

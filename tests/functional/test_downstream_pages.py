"""Derivatives registered through the API with their weights: lineage verified against the
declared base, or shown unverified; the lineage page and image; the public transparency report
(JSON and page), which never names anyone and never shows in-house releases; and both pages
in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringfence.access.models import Grant
from ringfence.accounts.tokens import create_token
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.downstream import schedules
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import TINY_CODE, write_tiny_model
from tests.fixtures_access import make_release, make_user
from tests.fixtures_downstream import finetune
from tests.live import serve

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.shared_database


@dataclass
class World:
    """The app, Ada's download token, and weights files to register."""

    services: Services
    client: TestClient
    token: str
    tuned: Path  # a fine-tune of base@1.0
    unrelated: Path  # weights from no release at all
    other_tuned: Path  # a fine-tune of other@1.0
    registered: dict[str, dict[str, object]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[World]:
    """One world per backend: two published releases, an in-house one, Ada's grant, two
    traces, a planned widening, and Ada's three derivatives registered through the API."""
    home = tmp_path_factory.mktemp("downstream-pages")
    services = build(Settings(home=home, database_url=module_database_url))
    services.prepare()
    models = tmp_path_factory.mktemp("downstream-models")
    base_dir = write_tiny_model(models / "base", seed=0)
    other_dir = write_tiny_model(models / "other", seed=5)
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        for name, directory in (("base", base_dir), ("other", other_dir)):
            release = catalogue.publish(
                session, services.blobs, directory, model=name, version="1.0", fingerprint=TINY_CODE
            )
            release.circle = "research"
        make_release(session, "secret-model", "1.0", circle="in-house")
        ada = make_user(session, "ada@uni.example")
        token = create_token(session, ada, "download", actor="test").raw
        base = catalogue.get_release(session, "base@1.0")
        session.add(
            Grant(
                user_id=ada.id,
                release_id=base.id,
                granted_by="test",
                expires_at=utcnow() + timedelta(days=30),
            )
        )
        record(
            session,
            EventTag.Tracing.TraceRun,
            actor="admin@lab.example",
            subject="release:base@1.0",
            payload={"accused": [{"recipient": "ada@uni.example"}]},
        )
        record(session, EventTag.Tracing.TraceRun, actor="t", subject="release:base@1.0")
        schedules.plan(session, base, "public", utcnow() + timedelta(days=90), actor="test")
    with TestClient(create_app(services)) as client:
        world = World(
            services,
            client,
            token,
            finetune(base_dir, models / "tuned" / "a"),
            write_tiny_model(models / "unrelated", seed=9) / "model.safetensors",
            finetune(other_dir, models / "tuned" / "b"),
        )
        world.registered = _register_all(world)
        yield world


def _register(world: World, name: str, weights: Path) -> dict[str, object]:
    with weights.open("rb") as fh:
        r = world.client.post(
            "/api/v1/derivatives",
            headers={"Authorization": f"Bearer {world.token}"},
            data={"name": name, "relation": "finetune", "base": "base@1.0"},
            files={"weights": ("model.safetensors", fh, "application/octet-stream")},
        )
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def _register_all(world: World) -> dict[str, dict[str, object]]:
    return {
        "ada/good": _register(world, "ada/good", world.tuned / "model.safetensors"),
        "ada/not-from-base": _register(world, "ada/not-from-base", world.unrelated),
        "ada/from-other": _register(
            world, "ada/from-other", world.other_tuned / "model.safetensors"
        ),
    }


def test_lineage_is_checked_against_the_weights(world: World) -> None:
    registered = world.registered
    assert registered["ada/good"]["lineage"] == "verified", registered["ada/good"]
    assert registered["ada/not-from-base"]["lineage"] == "unverified"
    note = str(registered["ada/from-other"]["lineage_note"])
    assert registered["ada/from-other"]["lineage"] == "unverified"
    assert "other@1.0" in note and "not the declared base" in note
    page = world.client.get("/models/base/1.0/lineage")
    assert page.status_code == 200
    assert page.text.count('data-testid="derivative-row"') == 3
    assert "ada@uni.example" not in page.text  # owners are not shown to the public
    image = world.client.get("/models/base/1.0/lineage.svg")
    assert image.headers["content-type"].startswith("image/svg+xml")
    assert "ada/not-from-base" in image.text and "unverified" in image.text
    assert "<script" not in image.text
    # An in-house release has no lineage page for anyone outside it.
    assert world.client.get("/models/secret-model/1.0/lineage").status_code == 404
    # Bad input is one line and registers nothing.
    r = world.client.post(
        "/api/v1/derivatives",
        headers={"Authorization": f"Bearer {world.token}"},
        data={"name": "x", "relation": "finetune", "base": "secret-model@1.0"},
    )
    assert r.status_code == 404 and "secret-model" in r.json()["error"]["message"]


def test_transparency_counts_never_names(world: World) -> None:
    r = world.client.get("/transparency.json")
    assert r.status_code == 200
    report = r.json()
    refs = [entry["release"] for entry in report["releases"]]
    assert refs == ["base@1.0", "other@1.0"]  # the in-house release never appears
    base = report["releases"][0]
    assert base["circle"] == "research" and base["licence"] is None
    assert base["grants"] == {"in-house": 0, "partners": 0, "research": 1}
    assert (base["traces"], base["confirmed_leaks"]) == (2, 1)
    assert [(s["circle"], s["state"]) for s in base["schedule"]] == [("public", "planned")]
    assert base["gates"] == {"next_circle": "public", "held_by": []}
    text = json.dumps(report) + world.client.get("/transparency").text
    assert "@uni.example" not in text and "@lab.example" not in text
    assert "secret-model" not in text


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make chromium)")
def test_transparency_and_lineage_in_a_browser(world: World) -> None:
    from playwright.sync_api import expect, sync_playwright

    with serve(create_app(world.services)) as base_url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(f"{base_url}/transparency")
            rows = page.get_by_test_id("transparency-row")
            expect(rows).to_have_count(2)
            row = rows.filter(has_text="base@1.0")
            expect(row.get_by_test_id("circle")).to_have_text("research")
            expect(row.get_by_test_id("grants")).to_contain_text("0 / 0 / 1")
            expect(row.get_by_test_id("leaks")).to_have_text("1")
            expect(row.get_by_test_id("schedule")).to_contain_text("public on")
            expect(page.locator("body")).not_to_contain_text("secret-model")

            row.get_by_role("link", name="lineage").click()
            expect(page).to_have_url(f"{base_url}/models/base/1.0/lineage")
            graph = page.get_by_test_id("lineage-graph")
            expect(graph).to_be_visible()
            width = graph.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width > 200, "the lineage image did not load"
            derivative = page.get_by_test_id("derivative-row").filter(has_text="ada/not-from-base")
            expect(derivative.get_by_test_id("lineage-state")).to_have_text("unverified")
            good = page.get_by_test_id("derivative-row").filter(has_text="ada/good")
            expect(good.get_by_test_id("lineage-state")).to_have_text("verified")
        finally:
            browser.close()

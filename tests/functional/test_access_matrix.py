"""Authorisation matrix: every role x circle x grant state x endpoint, in one app and database.

Each (role, grant state) pair is one person holding a grant in that state on one release per
circle, so no case disturbs another. Expectations come from the rules in DESIGN.md, written
out here independently of the code under test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringfence.access import grants as grant_services
from ringfence.access.models import CIRCLES, Grant, LicenceAcceptance
from ringfence.accounts.tokens import create_token
from ringfence.catalogue.models import Release
from ringfence.db import transaction, utcnow
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.fixtures_access import make_partner, make_release, make_user

ROLES = ("anonymous", "admin", "reviewer", "staff", "partner", "member")
STATES = ("none", "active", "unaccepted", "revoked", "expired")
ENDPOINTS = ("download", "request", "my-grants", "review", "decide", "circle", "audit")
#: the narrowest circle each kind of person belongs to (DESIGN.md: circles)
STANDING = {"admin": 0, "reviewer": 0, "staff": 0, "partner": 1, "member": 2}

pytestmark = pytest.mark.shared_database


@dataclass
class World:
    client: TestClient
    tokens: dict[tuple[str, str], str]
    services: Services


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[World]:
    home: Path = tmp_path_factory.mktemp("matrix")
    svc = build(Settings(home=home, database_url=module_database_url))
    svc.prepare()
    tokens: dict[tuple[str, str], str] = {}
    with transaction(svc.sessions) as session:
        releases = [make_release(session, f"m-{c}", "1.0", circle=c) for c in CIRCLES]
        partner = make_partner(session)
        for role, state in itertools.product(ROLES[1:], STATES):
            user = make_user(
                session,
                f"{role}-{state}@x.example",
                role="member" if role == "partner" else role,
                institution=partner if role == "partner" else None,
                secrets=svc.secrets,
            )
            scope = "admin" if role in ("admin", "reviewer") else "download"
            tokens[(role, state)] = create_token(session, user, scope, actor="test").raw
            if state == "none":
                continue
            for release in releases:
                past = state == "expired"
                session.add(
                    Grant(
                        user_id=user.id,
                        release_id=release.id,
                        granted_by="test",
                        state="revoked" if state == "revoked" else "active",
                        revoked_reason="matrix" if state == "revoked" else "",
                        expires_at=utcnow() + timedelta(days=-1 if past else 30),
                    )
                )
                if state != "unaccepted":
                    assert release.licence is not None
                    session.add(
                        LicenceAcceptance(
                            user_id=user.id,
                            release_id=release.id,
                            licence_id=release.licence.id,
                            licence_ref=release.licence.ref,
                            text_sha256=release.licence.sha256,
                        )
                    )
    with TestClient(create_app(svc)) as client:
        yield World(client, tokens, svc)


def expected(role: str, state: str, circle: str, endpoint: str) -> int:
    """The status the rules demand."""
    if role == "anonymous":
        return 401
    inside = STANDING[role] <= CIRCLES.index(circle)
    lab_reviewer = role in ("admin", "reviewer")
    # In-house and partner releases exist only for their circle and whoever held a grant.
    hidden = not inside and circle in ("in-house", "partners") and state == "none"
    match endpoint:
        case "download":
            return 404 if hidden else 200 if inside and state == "active" else 403
        case "request":
            return 404 if hidden else 200 if inside else 403
        case "my-grants":
            return 200
        case "review":
            return 200 if lab_reviewer else 403
        case "decide":  # request 999999 does not exist: reviewers get a per-item error
            return 200 if lab_reviewer else 403
        case "circle":  # an invalid circle: admins get past authorisation to validation
            return 400 if role == "admin" else 403
        case _:
            return 200 if role == "admin" else 403


@pytest.mark.parametrize(("role", "state"), list(itertools.product(ROLES[1:], STATES)))
def test_authorise_download_agrees(world: World, role: str, state: str) -> None:
    """The service distribution calls gives the same answers (run first: requests renew grants)."""
    from ringfence.accounts.services import get_user
    from ringfence.errors import PermissionDenied

    with transaction(world.services.sessions) as session:
        user = get_user(session, f"{role}-{state}@x.example")
        for release in session.query(Release).all():
            try:
                grant_services.authorise_download(session, user, release)
                allowed = 200
            except PermissionDenied:
                allowed = 403
            # The service refuses (403); hiding the release (404) is the web layer's answer.
            want = expected(role, state, release.circle, "download")
            assert allowed == (403 if want == 404 else want), release.ref


CASES = list(itertools.product(ROLES, STATES, CIRCLES, ENDPOINTS))


@pytest.mark.parametrize(
    ("role", "state", "circle", "endpoint"), CASES, ids=["-".join(c) for c in CASES]
)
def test_matrix(world: World, role: str, state: str, circle: str, endpoint: str) -> None:
    token = world.tokens.get((role, state))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = f"/api/v1/access/releases/m-{circle}/1.0"
    c = world.client
    match endpoint:
        case "download":
            r = c.get(base, headers=headers)
            if r.status_code == 200:
                r.status_code = 200 if r.json()["can_download"] else 403
        case "request":
            answers = {
                "affiliation": "x",
                "country": "FR",
                "intended_use": "Research",
                "no_redistribution": True,
            }
            r = c.post(f"{base}/requests", json={"answers": answers}, headers=headers)
        case "my-grants":
            r = c.get("/api/v1/access/grants", headers=headers)
        case "review":
            r = c.get("/api/v1/access/review", headers=headers)
        case "decide":
            r = c.post(
                "/api/v1/access/review/decisions",
                headers=headers,
                json={"request_ids": [999999], "approve": True},
            )
        case "circle":
            r = c.post(f"{base}/circle", json={"circle": "nowhere"}, headers=headers)
        case _:
            r = c.get("/api/v1/audit/events", headers=headers)
    assert r.status_code == expected(role, state, circle, endpoint), r.text

"""Authorisation matrix: every route of the app x every kind of principal, from one rule table.

The routes come from the app itself, so a new route without an entry in `TABLE` fails
`test_every_route_has_an_entry`. Each entry names the rule its route obeys; the rules are
written from DESIGN.md and the security issue (#10), not from what the code does today:

- pages take browser sessions only; a bearer token on a page counts as anonymous;
- the JSON API and the Hub API take tokens only; a session cookie there counts as anonymous;
- a token acts within its scope (read < download < admin) and never beyond its holder's role;
- in-house and partner releases do not exist (404) for people outside their circle;
- unverified accounts see their account page but cannot make tokens, ask or accept (403);
- file routes stream bytes to exactly the holders of an active grant with an accepted licence
  in a circle that admits them, and nothing to anyone else; the Hub's README.md model card of
  a release with a gate report (`CARD_TABLE`) is one more such file.

Outcome classes: `ok` (past authorisation: 2xx, 3xx elsewhere than /login, or a 400/409/415/422
business refusal of the deliberately harmless body), `login` (401 or 303 to /login), `denied`
(403), `hidden` (404). Unsafe requests carry a valid CSRF token, so the matrix checks
authorisation; CSRF and tokens-on-pages have tests of their own below.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.access.licences import install_research_licence
from ringfence.access.models import AccessRequest, Grant, LicenceAcceptance
from ringfence.accounts.models import User
from ringfence.accounts.services import start_session
from ringfence.accounts.tokens import create_token
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.distribution import links
from ringfence.distribution.services import ensure_manifest
from ringfence.distribution.tasks import compute_pending
from ringfence.gates.models import GateRun
from ringfence.incidents.services import open_incident
from ringfence.jobs.models import Job
from ringfence.organisations.models import NDA
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import TINY_CODE, write_tiny_model
from tests.fixtures_access import PASSWORD, make_partner, make_release, make_user

OK, LOGIN, DENIED, HIDDEN = "ok", "login", "denied", "hidden"
CIRCLES = ("in-house", "partners", "research", "public")
#: circles whose releases are listed to everyone (the page is the door to ask for access)
LISTED = ("research", "public")
LAB_ROLES = ("admin", "reviewer", "staff")
REVIEWERS = ("admin", "reviewer")
SCOPES = ("read", "download", "admin")
RANK = {scope: i for i, scope in enumerate(SCOPES)}
#: routes the matrix does not judge: the framework's own schema and docs, and static files
SKIPPED = ("/api/v1/openapi.json", "/api/v1/docs", "/docs/oauth2-redirect", "/static")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
RANGE = 64  # bytes asked of file routes: enough to see the file's own header
ANON_CSRF_COOKIE = "matrix-anonymous-browser"

pytestmark = pytest.mark.shared_database


# --- who is calling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """An account in the world, and what the rules say about it."""

    key: str
    role: str = "member"
    verified: bool = True
    grant: str | None = None  # the state of the grants this person holds
    granted: tuple[str, ...] = ()  # the circles of the releases those grants are for
    mode: str = "download"  # the grants' access mode: download, or hosted (inference only)

    @property
    def email(self) -> str:
        return f"{self.key}@matrix.example"

    @property
    def scopes(self) -> tuple[str, ...]:
        """The token scopes this person may hold (admin scope only for admins and reviewers)."""
        if not self.verified:
            return ()
        return SCOPES if self.role in REVIEWERS else SCOPES[:2]

    def admitted(self, circle: str) -> bool:
        """Whether the circle admits this person (the lab's people are in every circle)."""
        return self.role in LAB_ROLES or circle in ("research", "public")

    def sees(self, circle: str) -> bool:
        """Whether a release of this circle exists for this person."""
        return circle in LISTED or self.admitted(circle)

    def can_download(self, circle: str) -> bool:
        """An active grant, licence accepted, in a circle that admits this person."""
        return (
            self.verified
            and self.grant == "active"
            and self.mode == "download"
            and circle in self.granted
            and self.admitted(circle)
        )

    def can_query(self, circle: str) -> bool:
        """A hosted grant, otherwise like `can_download`: the inference endpoint only."""
        return (
            self.verified
            and self.grant == "active"
            and self.mode == "hosted"
            and circle in self.granted
            and self.admitted(circle)
        )


PEOPLE = (
    Person("unverified", verified=False),
    Person("member-none"),
    Person("member-pending"),
    Person("member-active", grant="active", granted=LISTED),
    Person("member-revoked", grant="revoked", granted=LISTED),
    Person("member-expired", grant="expired", granted=LISTED),
    # A hosted grant (#15): no byte of any artifact by any route, only the inference endpoint.
    Person("member-hosted", grant="active", granted=LISTED, mode="hosted"),
    Person("reviewer", role="reviewer"),
    Person("staff", role="staff", grant="active", granted=CIRCLES),
    Person("admin", role="admin"),
)
BY_KEY = {p.key: p for p in PEOPLE}


@dataclass(frozen=True)
class Principal:
    """A person (or nobody) calling through one method: anonymous, a session or a token."""

    person: Person | None
    via: str  # "anonymous", "session", or a token scope

    @property
    def name(self) -> str:
        return "anonymous" if self.person is None else f"{self.person.key}/{self.via}"

    @property
    def browser(self) -> Person | None:
        """Who a page sees: the session's person; a token on a page is anonymous."""
        return self.person if self.via == "session" else None

    @property
    def bearer(self) -> Person | None:
        """Who an API sees: the token's holder; a cookie on an API is anonymous."""
        return self.person if self.via in SCOPES else None


def _principals() -> Iterator[Principal]:
    yield Principal(None, "anonymous")
    for person in PEOPLE:
        yield Principal(person, "session")
        for scope in person.scopes:
            yield Principal(person, scope)


PRINCIPALS = tuple(_principals())

# --- the rules -------------------------------------------------------------------------------

Rule = Callable[[Principal, str], str]


def anyone(p: Principal, circle: str) -> str:
    """Public: every caller, signed in or not."""
    return OK


def forged(p: Principal, circle: str) -> str:
    """A public page given a forged signed token: refused alike for everyone."""
    return DENIED


def nobody(p: Principal, circle: str) -> str:
    """Absent: the development outbox without `dev_outbox` (this world's settings)."""
    return HIDDEN


def scraper(p: Principal, circle: str) -> str:
    """The metrics: the metrics token, or a loopback peer when none is set; no account opens it.

    This world sets no metrics token and its client is no loopback peer ("testclient"), so
    the endpoint does not exist for anyone, admins included (test_operations checks the rest).
    """
    return HIDDEN


def signed_in(p: Principal, circle: str) -> str:
    """A page for any signed-in browser, verified or not (the account page)."""
    return OK if p.browser else LOGIN


def verified_browser(p: Principal, circle: str) -> str:
    """A page action for verified accounts (tokens: unverified accounts get 403)."""
    if p.browser is None:
        return LOGIN
    return OK if p.browser.verified else DENIED


def own_code(p: Principal, circle: str) -> str:
    """Changing one's own second factor with a code: the matrix sends a wrong one.

    Enrolled people (admins, reviewers) are refused (403); for the others two-factor is off,
    and the form is refused as business (400-409), past authorisation.
    """
    if p.browser is None:
        return LOGIN
    return DENIED if p.browser.role in REVIEWERS else OK


def browser_with_role(*roles: str) -> Rule:
    """A page for signed-in browsers of one of `roles`."""

    def rule(p: Principal, circle: str) -> str:
        if p.browser is None:
            return LOGIN
        return OK if p.browser.role in roles else DENIED

    return rule


def owned_by(key: str, *, verified: bool = False) -> Rule:
    """A page action on an object of one person (a token, a request): others do not see it.

    With `verified`, an unverified account is refused (403) before anything is looked up.
    """

    def rule(p: Principal, circle: str) -> str:
        if p.browser is None:
            return LOGIN
        if verified and not p.browser.verified:
            return DENIED
        return OK if p.browser.key == key else HIDDEN

    return rule


def release_page(p: Principal, circle: str) -> str:
    """A release's page: listed circles for all; others only for the people they admit."""
    person = p.browser
    visible = circle in LISTED if person is None else person.sees(circle)
    return OK if visible else HIDDEN


def release_action(p: Principal, circle: str) -> str:
    """Asking for a release or accepting its licence from its page."""
    person = p.browser
    if person is None:
        return LOGIN
    if not person.verified:
        return DENIED  # refused before any release is looked up: it tells nothing of any
    return OK if person.sees(circle) else HIDDEN


def catalogue_api(p: Principal, circle: str) -> str:
    """The catalogue API: anonymous reads listed releases; a token sees what its holder sees."""
    person = p.bearer
    visible = circle in LISTED if person is None else person.sees(circle)
    return OK if visible else HIDDEN


def token(
    scope: str,
    *,
    roles: tuple[str, ...] = (),
    release: bool = False,
    download: bool = False,
    owner: str = "",
    hub: bool = False,
) -> Rule:
    """An API route: a token of `scope` or wider, held by one of `roles` when given.

    With `release`, the path names a release the holder must see; with `download`, the
    holder must also be able to download it; with `owner`, the path names that person's
    object, which does not exist for anyone else. The Hub (`hub`) looks the repository up
    before the credentials, as huggingface_hub expects: a hidden one is "not found" even
    to a caller without a token.
    """

    def rule(p: Principal, circle: str) -> str:
        person = p.bearer
        if hub and circle not in LISTED and (person is None or not person.sees(circle)):
            return HIDDEN
        if person is None:
            return LOGIN
        if RANK[p.via] < RANK[scope] or (roles and person.role not in roles):
            return DENIED
        if release and not person.sees(circle):
            return HIDDEN
        if download and not person.can_download(circle):
            return DENIED
        if owner and person.key != owner:
            return HIDDEN
        return OK

    return rule


def link(p: Principal, circle: str) -> str:
    """A download link is its holder's capability: the caller's own credentials do not matter.

    Each person calls with their own link for the release (a forged one when they never held
    a grant for it); it works while the grant behind it does, and is refused (403) otherwise.
    """
    person = p.person
    if person is None or circle not in person.granted:
        return DENIED  # a forged link, refused like any forged signed token
    return OK if person.can_download(circle) else DENIED


def inference(*, release: bool = False, listed: bool = False) -> Rule:
    """The OpenAI-compatible endpoint (/v1): a download-scope token (tokens only).

    With `release`, the body names the circle's release: hidden releases do not exist (404),
    and only a hosted grant's holder is past authorisation (the harmless body then asks for
    more tokens than any grant allows: a 400); download grants are refused (403). With
    `listed`, the path names the model: it exists only for its hosted holders.
    """

    def rule(p: Principal, circle: str) -> str:
        person = p.bearer
        if person is None:
            return LOGIN
        if RANK[p.via] < RANK["download"]:
            return DENIED
        if listed:
            return OK if person.can_query(circle) else HIDDEN
        if release and not person.sees(circle):
            return HIDDEN
        if release and not person.can_query(circle):
            return DENIED
        return OK

    return rule


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """What an unsafe request sends: harmless, repeatable, and valid enough to reach the rule."""

    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None


@dataclass(frozen=True)
class Entry:
    """The rule a route obeys and how to call it."""

    rule: Rule
    per_circle: bool = False  # path names a release: one case per circle
    scratch: bool = False  # act on the circle's scratch release (state changes stay there)
    body: Callable[[World, str], Body] | None = None
    fresh_session: bool = False  # the call ends the session it uses
    file: bool = False  # a byte-stream route: the bytes are checked, not only the status
    lands: str = ""  # a redirect here is this route's intended answer, even to /login
    limited: bool = False  # limited per IP, and every principal here shares one: 429 is ok
    query: str = ""
    card: bool = False  # on the circle's release with a gate report, asking for its README.md


def _form(**fields: Any) -> Callable[[World, str], Body]:
    return lambda world, circle: Body(data=fields)


def _json(**fields: Any) -> Callable[[World, str], Body]:
    return lambda world, circle: Body(json=fields)


REQUEST_ANSWERS = {
    "affiliation": "Matrix Lab",
    "country": "FR",
    "intended_use": "Research",
    "no_redistribution": True,
}
SUSPECT = {"suspect": ("suspect.bin", b"not a model", "application/octet-stream")}

#: Hub metadata needs a read token of someone who may download (a gated repository); files
#: need the download scope
HUB = token("read", release=True, download=True, hub=True)
HUB_FILE = token("download", release=True, download=True, hub=True)

TABLE: dict[tuple[str, str], Entry] = {
    # catalogue pages and API
    ("GET", "/"): Entry(anyone),
    ("GET", "/models/{name}/{version}"): Entry(release_page, per_circle=True),
    ("GET", "/api/v1/releases"): Entry(anyone),
    ("GET", "/api/v1/releases/{name}/{version}"): Entry(catalogue_api, per_circle=True),
    # signing up and in: public pages
    ("GET", "/signup"): Entry(anyone),
    ("POST", "/signup"): Entry(
        anyone,
        body=_form(email="newcomer@matrix.example", password="a long new password"),
        lands="/login",
        limited=True,
    ),
    ("GET", "/verify"): Entry(forged, query="token=forged"),
    ("GET", "/login"): Entry(anyone),
    ("POST", "/login"): Entry(anyone, body=_form(email="decoy@matrix.example", password=PASSWORD)),
    ("POST", "/logout"): Entry(anyone, fresh_session=True, lands="/login"),
    ("GET", "/password/reset"): Entry(anyone),
    ("POST", "/password/reset"): Entry(
        anyone, body=_form(email="nobody@matrix.example"), lands="/login", limited=True
    ),
    ("GET", "/password/set"): Entry(anyone),
    ("POST", "/password/set"): Entry(
        forged, body=_form(token="forged", password="a long new password")
    ),
    # my account
    ("GET", "/account"): Entry(signed_in),
    ("POST", "/account/tokens"): Entry(verified_browser, body=_form(scope="read", name="m")),
    ("POST", "/account/tokens/{token_id}/revoke"): Entry(owned_by("member-active")),
    ("POST", "/requests/{request_id}/appeal"): Entry(
        owned_by("member-pending", verified=True), body=_form(text="please")
    ),
    ("GET", "/outbox"): Entry(nobody),
    # two-factor sign-in: the code step is public (its half sign-in token is the credential);
    # the settings are any signed-in browser's own
    ("GET", "/login/two-factor"): Entry(anyone, lands="/login"),
    ("POST", "/login/two-factor"): Entry(forged, body=_form(token="forged", code="000000")),
    ("GET", "/account/two-factor"): Entry(signed_in),
    ("POST", "/account/two-factor/begin"): Entry(signed_in),
    ("POST", "/account/two-factor/confirm"): Entry(signed_in, body=_form(code="000000")),
    ("POST", "/account/two-factor/disable"): Entry(own_code, body=_form(code="000000")),
    ("POST", "/account/two-factor/recovery-codes"): Entry(own_code, body=_form(code="000000")),
    # a release's access part
    ("POST", "/models/{name}/{version}/request"): Entry(
        release_action, per_circle=True, scratch=True, body=_form(**REQUEST_ANSWERS)
    ),
    ("POST", "/models/{name}/{version}/licence"): Entry(
        release_action,
        per_circle=True,
        scratch=True,
        body=lambda world, circle: Body(data={"licence_sha256": world.licence_sha, "agree": "on"}),
    ),
    ("GET", "/models/{name}/{version}/licence"): Entry(release_page, per_circle=True),
    # the lab's pages
    ("GET", "/review"): Entry(browser_with_role(*REVIEWERS)),
    ("POST", "/review/decide"): Entry(
        browser_with_role(*REVIEWERS),
        body=lambda world, circle: Body(
            data={"ids": str(world.decoy_request_id), "action": "reject", "reason": "matrix"}
        ),
    ),
    ("GET", "/admin/circles"): Entry(browser_with_role("admin")),
    ("POST", "/admin/circles/set"): Entry(
        browser_with_role("admin"),
        body=_form(release="s-research@1.0", circle="research", reason="matrix"),
    ),
    ("POST", "/admin/institutions"): Entry(
        browser_with_role("admin"), body=_form(name="Matrix Institute", domains="mi.example")
    ),
    ("POST", "/admin/ndas"): Entry(
        browser_with_role("admin"),
        body=lambda world, circle: Body(
            data={"institution": "Partner Uni", "signatory": "Dean", "expires": "2099-01-01"},
            files={"document": ("nda.pdf", b"%PDF-1.4 matrix", "application/pdf")},
        ),
    ),
    ("POST", "/admin/ndas/{nda_id}/countersign"): Entry(browser_with_role("admin")),
    ("GET", "/admin/institutions"): Entry(browser_with_role("admin")),
    # a release's access policy; the harmless body (no form, zero days) is refused after
    # authorisation, so the scratch release keeps its policy
    ("GET", "/admin/releases/{name}/{version}/policy"): Entry(
        browser_with_role("admin"), per_circle=True, scratch=True
    ),
    ("POST", "/admin/releases/{name}/{version}/policy"): Entry(
        browser_with_role("admin"), per_circle=True, scratch=True, body=_form(grant_days="0")
    ),
    # an empty reason is refused after authorisation, so the world's NDA stays in force
    ("POST", "/admin/ndas/{nda_id}/revoke"): Entry(
        browser_with_role("admin"), body=_form(reason="")
    ),
    ("GET", "/admin/licences"): Entry(browser_with_role("admin")),
    ("POST", "/admin/licences"): Entry(
        browser_with_role("admin"), body=_form(slug="research-only", title="", text="")
    ),
    ("POST", "/admin/licences/set"): Entry(
        browser_with_role("admin"),
        body=lambda world, circle: Body(data={"release": "s-public@1.0", "licence": world.licence}),
    ),
    ("GET", "/admin/users"): Entry(browser_with_role("admin")),
    ("POST", "/admin/users"): Entry(
        browser_with_role("admin"), body=_form(email="decoy@matrix.example", role="member")
    ),
    # the audit page and tracing: admins only, as their modules' docstrings say
    ("GET", "/admin/audit"): Entry(browser_with_role("admin")),
    ("GET", "/admin/trace"): Entry(browser_with_role("admin")),
    ("POST", "/admin/trace"): Entry(
        browser_with_role("admin"), body=lambda world, circle: Body(files=SUSPECT)
    ),
    # the access API
    ("GET", "/api/v1/access/releases/{name}/{version}"): Entry(
        token("read", release=True), per_circle=True
    ),
    ("POST", "/api/v1/access/releases/{name}/{version}/licence"): Entry(
        # writes need the download scope: a read token is read-only
        token("download", release=True),
        per_circle=True,
        scratch=True,
        body=lambda world, circle: Body(json={"sha256": world.licence_sha}),
    ),
    ("POST", "/api/v1/access/releases/{name}/{version}/requests"): Entry(
        # writes need the download scope: a read token is read-only
        token("download", release=True),
        per_circle=True,
        scratch=True,
        body=_json(answers=REQUEST_ANSWERS),
    ),
    ("GET", "/api/v1/access/requests"): Entry(token("read")),
    ("POST", "/api/v1/access/requests/{request_id}/appeal"): Entry(
        token("download", owner="member-pending"), body=_json(text="please")
    ),
    ("GET", "/api/v1/access/grants"): Entry(token("read")),
    ("GET", "/api/v1/access/review"): Entry(token("admin", roles=REVIEWERS)),
    ("POST", "/api/v1/access/review/decisions"): Entry(
        token("admin", roles=REVIEWERS),
        body=lambda world, circle: Body(
            json={"request_ids": [world.decoy_request_id], "approve": False, "reason": "matrix"}
        ),
    ),
    ("POST", "/api/v1/access/releases/{name}/{version}/circle"): Entry(
        token("admin", roles=("admin",), release=True),
        per_circle=True,
        scratch=True,
        body=lambda world, circle: Body(json={"circle": circle, "reason": "matrix"}),
    ),
    ("GET", "/api/v1/access/releases/{name}/{version}/policy"): Entry(
        token("admin", roles=("admin",), release=True), per_circle=True, scratch=True
    ),
    ("PUT", "/api/v1/access/releases/{name}/{version}/policy"): Entry(
        token("admin", roles=("admin",), release=True),
        per_circle=True,
        scratch=True,
        body=_json(grant_days=0),
    ),
    # the organisations API (an empty reason is refused: the world's NDA stays in force)
    ("POST", "/api/v1/organisations/ndas/{nda_id}/revoke"): Entry(
        token("admin", roles=("admin",)), body=_json(reason="")
    ),
    # the audit and tracing API
    ("GET", "/api/v1/audit/events"): Entry(token("admin", roles=("admin",))),
    ("GET", "/api/v1/audit/verify"): Entry(token("admin", roles=("admin",))),
    ("POST", "/api/v1/trace"): Entry(
        token("admin", roles=("admin",)), body=lambda world, circle: Body(files=SUSPECT)
    ),
    # the Hub API: gated repositories, a download token of someone who may download
    ("GET", "/api/models/{ns}/{name}"): Entry(HUB, per_circle=True),
    ("GET", "/api/models/{ns}/{name}/revision/{revision}"): Entry(HUB, per_circle=True),
    ("GET", "/api/models/{ns}/{name}/tree/{revision}"): Entry(HUB, per_circle=True),
    ("GET", "/api/models/{ns}/{name}/tree/{revision}/{path:path}"): Entry(HUB, per_circle=True),
    ("GET", "/{ns}/{name}/resolve/{revision}/{path:path}"): Entry(
        HUB_FILE, per_circle=True, file=True
    ),
    ("HEAD", "/{ns}/{name}/resolve/{revision}/{path:path}"): Entry(
        HUB_FILE, per_circle=True, file=True
    ),
    # download links
    ("GET", "/d/{token}"): Entry(link, per_circle=True),
    ("GET", "/d/{token}/files.json"): Entry(link, per_circle=True),
    ("GET", "/d/{token}/download.sh"): Entry(link, per_circle=True),
    ("GET", "/d/{token}/model.sig"): Entry(link, per_circle=True),
    ("GET", "/d/{token}/f/{path:path}"): Entry(link, per_circle=True, file=True),
    ("HEAD", "/d/{token}/f/{path:path}"): Entry(link, per_circle=True, file=True),
    # the distribution API
    ("POST", "/api/v1/distribution/links"): Entry(
        token("download", release=True, download=True),
        per_circle=True,
        body=lambda world, circle: Body(json={"release": f"m-{circle}@1.0"}),
    ),
    ("GET", "/api/v1/distribution/releases/{ref}/manifest"): Entry(
        token("download", release=True, download=True), per_circle=True
    ),
    ("GET", "/api/v1/distribution/signing-key.pem"): Entry(anyone),
    # operations: the Prometheus scrape endpoint
    ("GET", "/metrics"): Entry(scraper),
    # jobs: the lab's background jobs (staff and admins read); an admin retries a failed one
    # (the world's job is no failed one: the retry is refused as a conflict, past the rule)
    ("GET", "/admin/jobs"): Entry(browser_with_role("admin", "staff")),
    ("POST", "/admin/jobs/{job_id}/retry"): Entry(browser_with_role("admin")),
    # downstream: the transparency report is public (counts, never names); a lineage graph is
    # seen by whoever sees its release; one's own derivatives (an empty name is refused after
    # authorisation, so nothing is registered)
    ("GET", "/transparency"): Entry(anyone),
    ("GET", "/transparency.json"): Entry(anyone),
    ("GET", "/models/{name}/{version}/lineage"): Entry(release_page, per_circle=True),
    ("GET", "/models/{name}/{version}/lineage.svg"): Entry(release_page, per_circle=True),
    ("GET", "/derivatives"): Entry(signed_in),
    # one's requests with their timelines; reviewers choose how they hear of new ones
    ("GET", "/account/requests"): Entry(signed_in),
    ("POST", "/account/review-notices"): Entry(browser_with_role(*REVIEWERS), body=_form(mode="")),
    ("POST", "/derivatives"): Entry(verified_browser, body=_form(name="")),
    ("POST", "/api/v1/derivatives"): Entry(
        token("download"), body=_form(name="", relation="finetune", base="m-research@1.0")
    ),
    # webhooks: the admins' page (an empty URL or delivery is refused after authorisation)
    ("GET", "/admin/webhooks"): Entry(browser_with_role("admin")),
    ("POST", "/admin/webhooks"): Entry(browser_with_role("admin"), body=_form(url="")),
    ("POST", "/admin/webhooks/redeliver"): Entry(
        browser_with_role("admin"), body=_form(delivery="")
    ),
    # incidents: admins only, pages by session and the API by an admin token; the world's
    # incident names no release, so each harmless body is refused after authorisation
    ("GET", "/admin/incidents"): Entry(browser_with_role("admin")),
    ("POST", "/admin/incidents"): Entry(
        browser_with_role("admin"), body=_form(kind="rumour", source="")
    ),
    ("GET", "/admin/incidents/{incident_id}"): Entry(browser_with_role("admin")),
    ("POST", "/admin/incidents/{incident_id}/trace"): Entry(
        browser_with_role("admin"), body=lambda world, circle: Body(files=SUSPECT)
    ),
    ("POST", "/admin/incidents/{incident_id}/revoke"): Entry(
        browser_with_role("admin"), body=_form(grant_id="0", reason="")
    ),
    ("POST", "/admin/incidents/{incident_id}/narrow"): Entry(
        browser_with_role("admin"), body=_form(circle="in-house", reason="")
    ),
    ("POST", "/admin/incidents/{incident_id}/notice"): Entry(
        browser_with_role("admin"), body=_form(action="draft")
    ),
    ("POST", "/admin/incidents/{incident_id}/notice/send"): Entry(
        browser_with_role("admin"), body=_form(to="")
    ),
    ("GET", "/admin/incidents/{incident_id}/notice.txt"): Entry(browser_with_role("admin")),
    ("GET", "/admin/incidents/{incident_id}/notice.html"): Entry(browser_with_role("admin")),
    ("POST", "/admin/incidents/{incident_id}/pack"): Entry(browser_with_role("admin")),
    ("POST", "/admin/incidents/{incident_id}/close"): Entry(
        browser_with_role("admin"), body=_form(resolution="")
    ),
    ("GET", "/api/v1/incidents"): Entry(token("admin", roles=("admin",))),
    ("POST", "/api/v1/incidents"): Entry(
        token("admin", roles=("admin",)), body=_json(kind="rumour", source="")
    ),
    ("GET", "/api/v1/incidents/{incident_id}"): Entry(token("admin", roles=("admin",))),
    ("POST", "/api/v1/incidents/{incident_id}/trace"): Entry(
        token("admin", roles=("admin",)), body=lambda world, circle: Body(files=SUSPECT)
    ),
    ("POST", "/api/v1/incidents/{incident_id}/attribute"): Entry(
        token("admin", roles=("admin",)), body=_json(endpoint="", model="")
    ),
    ("POST", "/api/v1/incidents/{incident_id}/revoke-grant"): Entry(
        token("admin", roles=("admin",)), body=_json(grant_id=0, reason="")
    ),
    ("POST", "/api/v1/incidents/{incident_id}/narrow"): Entry(
        token("admin", roles=("admin",)), body=_json(circle="in-house", reason="")
    ),
    ("POST", "/api/v1/incidents/{incident_id}/notice"): Entry(token("admin", roles=("admin",))),
    ("PUT", "/api/v1/incidents/{incident_id}/notice"): Entry(
        token("admin", roles=("admin",)), body=_json(text="")
    ),
    ("GET", "/api/v1/incidents/{incident_id}/notice"): Entry(token("admin", roles=("admin",))),
    ("POST", "/api/v1/incidents/{incident_id}/notice/send"): Entry(
        token("admin", roles=("admin",)), body=_json(to="")
    ),
    ("POST", "/api/v1/incidents/{incident_id}/pack"): Entry(token("admin", roles=("admin",))),
    ("POST", "/api/v1/incidents/{incident_id}/close"): Entry(
        token("admin", roles=("admin",)), body=_json(resolution="")
    ),
    # hosted access (#15): the OpenAI-compatible endpoint, tokens only; the usage pages
    ("GET", "/v1/models"): Entry(inference()),
    ("GET", "/v1/models/{ns}/{name}@{version}"): Entry(inference(listed=True), per_circle=True),
    ("POST", "/v1/chat/completions"): Entry(
        inference(release=True),
        per_circle=True,
        body=lambda world, circle: Body(
            json={
                "model": f"lab/m-{circle}@1.0",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 100_000,
            }
        ),
    ),
    ("POST", "/v1/completions"): Entry(
        inference(release=True),
        per_circle=True,
        body=lambda world, circle: Body(
            json={"model": f"lab/m-{circle}@1.0", "prompt": "x", "max_tokens": 100_000}
        ),
    ),
    ("GET", "/account/usage"): Entry(signed_in),
    ("GET", "/admin/hosted"): Entry(browser_with_role("admin")),
    # gates: running them and overrides are admins' (sessions only); the report is for those
    # who review; the world's releases have no finished run and no override, so those who may
    # read the report or sign off find none (404), everyone else is refused before looking
    ("POST", "/models/{name}/{version}/gates/run"): Entry(
        browser_with_role("admin"), per_circle=True, scratch=True
    ),
    ("GET", "/models/{name}/{version}/gates/report"): Entry(
        lambda p, circle: (
            HIDDEN
            if browser_with_role(*REVIEWERS)(p, circle) == OK
            else browser_with_role(*REVIEWERS)(p, circle)
        ),
        per_circle=True,
    ),
    ("POST", "/models/{name}/{version}/gates/override"): Entry(
        browser_with_role("admin"), per_circle=True, scratch=True, body=_form(circle="research")
    ),
    ("POST", "/gates/overrides/{override_id}/sign-off"): Entry(
        lambda p, circle: (
            HIDDEN
            if browser_with_role("admin")(p, circle) == OK
            else browser_with_role("admin")(p, circle)
        )
    ),
}

#: the Hub routes again, on each circle's release with a finished gate run (`c-{circle}`): its
#: README.md is the generated model card, listed and sent by the same rules as its other files
CARD_TABLE: dict[tuple[str, str], Entry] = {
    ("GET", "/api/models/{ns}/{name}"): Entry(HUB, per_circle=True, card=True),
    ("GET", "/api/models/{ns}/{name}/tree/{revision}"): Entry(HUB, per_circle=True, card=True),
    ("GET", "/{ns}/{name}/resolve/{revision}/{path:path}"): Entry(
        HUB_FILE, per_circle=True, file=True, card=True
    ),
    ("HEAD", "/{ns}/{name}/resolve/{revision}/{path:path}"): Entry(
        HUB_FILE, per_circle=True, file=True, card=True
    ),
}
#: how the served card begins: its metadata block
CARD_HEAD = b"---\nlicense: other\nlicense_name: research-only\nmodel-index:"


def _gate_report(ref: str) -> dict[str, Any]:
    """A finished gate run's report, as small as the model card needs."""
    return {
        "release": ref,
        "widest_circle": "public",
        "policy": "matrix",
        "gates": [
            {
                "name": "memorisation",
                "passed": True,
                "reason": "no probe exceeds the policy",
                "figures": {"max_membership_auc": 0.5},
            }
        ],
        "provenance": None,
        "model_details": {"base_models": []},
    }


# --- the world -------------------------------------------------------------------------------


@dataclass
class World:
    """One app and database: a published tiny model per circle, and every kind of person."""

    services: Services
    client: TestClient
    head: bytes  # the first bytes of the published weights file (the same in every copy)
    licence: str
    licence_sha: str
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    links: dict[tuple[str, str], str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    spare_token_id: int = 0
    pending_request_id: int = 0
    decoy_request_id: int = 0
    nda_id: int = 0
    job_id: int = 0
    incident_id: int = 0

    def session_cookie(self, person: Person, *, fresh: bool = False) -> str:
        """A signed-in browser session of `person` (created directly: no /login, no 2FA form)."""
        if fresh or person.key not in self.sessions:
            with transaction(self.services.sessions) as session:
                user = session.scalars(select(User).where(User.email == person.email)).one()
                raw = start_session(session, user, ip=None, user_agent=None)
            if fresh:
                return raw
            self.sessions[person.key] = raw
        return self.sessions[person.key]

    def csrf(self, cookie: str) -> str:
        """The CSRF token a page bound to `cookie` would carry (web/security.py `csrf_token`)."""
        key = self.services.secrets.derive("web:csrf")
        return hmac.new(key, cookie.encode(), hashlib.sha256).hexdigest()


def _add_person(
    session: Session, world: World, person: Person, releases: dict[str, Any], carded: dict[str, Any]
) -> None:
    # Admins and reviewers are enrolled in two-factor sign-in (make_user's default for them).
    user = make_user(
        session,
        person.email,
        role=person.role,
        verified=person.verified,
        secrets=world.services.secrets,
    )
    for scope in person.scopes:
        world.tokens[(person.key, scope)] = create_token(session, user, scope, actor="test").raw
    for circle in person.granted:
        # The same grant on the circle's release with a model card, without a link of its own.
        _settle(_add_grant(session, person, user, carded[circle]), person)
        release = releases[circle]
        grant = _add_grant(session, person, user, release)
        session.flush()
        new = links.create_link(
            session, world.services.secrets, grant, release, actor="test", uses=100
        )
        world.links[(person.key, circle)] = new.token
        if person.grant == "active" and person.mode == "download":
            ensure_manifest(session, release, user)
        else:
            _settle(grant, person)  # after the link: links are made on a live grant


def _add_grant(session: Session, person: Person, user: User, release: Any) -> Grant:
    """A live grant of `person` on `release`, with the licence accepted (`_settle` ends it)."""
    grant = Grant(
        user_id=user.id,
        release_id=release.id,
        granted_by="test",
        state="active",
        mode=person.mode,
        expires_at=utcnow() + timedelta(days=30),
    )
    session.add(grant)
    session.add(
        LicenceAcceptance(
            user_id=user.id,
            release_id=release.id,
            licence_id=release.licence.id,
            licence_ref=release.licence.ref,
            text_sha256=release.licence.sha256,
        )
    )
    return grant


def _settle(grant: Grant, person: Person) -> None:
    """Put the grant in the state the person's row names: revoked or expired, else as it is."""
    if person.grant == "revoked":
        grant.state, grant.revoked_reason = "revoked", "matrix"
    elif person.grant == "expired":
        grant.expires_at = utcnow() - timedelta(days=1)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Iterator[World]:
    home: Path = tmp_path_factory.mktemp("authz")
    services = build(Settings(home=home, database_url=module_database_url))
    services.prepare()
    model = write_tiny_model(home.parent / f"{home.name}-model")
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        licence = install_research_licence(session, actor="test")
        releases: dict[str, Any] = {}
        carded: dict[str, Any] = {}
        for circle in CIRCLES:
            for prefix, kept in (("m", releases), ("c", carded)):
                release = catalogue.publish(
                    session,
                    services.blobs,
                    model,
                    model=f"{prefix}-{circle}",
                    version="1.0",
                    fingerprint=TINY_CODE,
                )
                release.circle, release.licence = circle, licence
                kept[circle] = release
            make_release(session, f"s-{circle}", "1.0", circle=circle)
            ref = carded[circle].ref
            session.add(
                GateRun(
                    release=carded[circle],
                    state="done",
                    progress=1.0,
                    policy="matrix",
                    widest_circle="public",
                    report=_gate_report(ref),
                    started_by="test",
                    finished_at=utcnow(),
                )
            )
        session.flush()
        world = World(
            services,
            TestClient(create_app(services), follow_redirects=False),
            (model / "model.safetensors").read_bytes()[:RANGE],
            licence.ref,
            licence.sha256,
        )
        for person in PEOPLE:
            _add_person(session, world, person, releases, carded)
        member = session.scalars(select(User).where(User.email == BY_KEY["member-active"].email))
        world.spare_token_id = create_token(
            session, member.one(), "read", name="spare", actor="test"
        ).token.id
        pending = session.scalars(
            select(User).where(User.email == BY_KEY["member-pending"].email)
        ).one()
        decoy = make_user(session, "decoy@matrix.example")
        for user, key in ((pending, "pending_request_id"), (decoy, "decoy_request_id")):
            request = AccessRequest(
                user_id=user.id, release_id=releases["research"].id, answers=REQUEST_ANSWERS
            )
            session.add(request)
            session.flush()
            setattr(world, key, request.id)
        make_partner(session)
        world.nda_id = session.scalars(select(NDA.id)).first() or 0
        world.job_id = session.scalars(select(Job.id)).first() or 0  # an active grant's manifest
        world.incident_id = open_incident(
            session, kind="url", source="https://leak.example/m", actor="test"
        ).id
    compute_pending(services)
    with world.client:
        yield world


# --- calling a route -------------------------------------------------------------------------


def _fill(path: str, world: World, p: Principal, circle: str, entry: Entry) -> str:
    prefix = "s" if entry.scratch else "c" if entry.card else "m"

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        person = p.person
        return {
            "name": f"{prefix}-{circle}",
            "version": "1.0",
            "ns": "lab",
            "revision": "1.0",
            "path": "README.md" if entry.card else "model.safetensors",
            "ref": f"m-{circle}@1.0",
            "token": world.links.get((person.key, circle), "forged") if person else "forged",
            "token_id": str(world.spare_token_id),
            "request_id": str(world.pending_request_id),
            "nda_id": str(world.nda_id),
            "job_id": str(world.job_id),
            "incident_id": str(world.incident_id),
            "override_id": "999999",
        }[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def call(
    world: World,
    method: str,
    path: str,
    p: Principal,
    circle: str,
    *,
    csrf: bool = True,
    table: dict[tuple[str, str], Entry] = TABLE,
) -> httpx.Response:
    """Send the entry's request as `p`, with a valid CSRF token on unsafe requests when `csrf`."""
    entry = table[(method, path)]
    headers: dict[str, str] = {}
    cookie_name, cookie = "", ""
    if p.via == "session" and p.person is not None:
        cookie_name = "rf_session"
        cookie = world.session_cookie(p.person, fresh=entry.fresh_session)
    elif p.person is not None:
        headers["Authorization"] = f"Bearer {world.tokens[(p.person.key, p.via)]}"
    if method in UNSAFE and csrf:
        if not cookie:
            # Anonymous browsers carry the pre-sign-in cookie their form page gave them.
            cookie_name, cookie = "rf_anon", ANON_CSRF_COOKIE
        headers["X-CSRF-Token"] = world.csrf(cookie)
    if cookie:
        headers["Cookie"] = f"{cookie_name}={cookie}"
    if entry.file:
        headers["Range"] = f"bytes=0-{RANGE - 1}"
    body = entry.body(world, circle) if entry.body else Body()
    world.client.cookies.clear()  # each call is its own principal: nothing carries over
    url = _fill(path, world, p, circle, entry) + (f"?{entry.query}" if entry.query else "")
    return world.client.request(
        method,
        url,
        headers=headers,
        json=body.json,
        data=body.data,
        files=body.files,
    )


def outcome(r: httpx.Response, lands: str = "", limited: bool = False) -> str:
    """The outcome class of a response (`lands`: where a redirect is the intended answer)."""
    status = r.status_code
    if limited and status == 429:
        return OK
    target = urlparse(r.headers.get("location", "")).path if r.is_redirect else None
    if lands and target == lands:
        return OK
    if status == 401 or target == "/login":
        return LOGIN
    if status == 403:
        return DENIED
    if status == 404:
        return HIDDEN
    if 200 <= status < 400 or status in (400, 409, 415, 422):
        return OK
    return f"status {status}"


def _routes(world: World) -> set[tuple[str, str]]:
    from fastapi.routing import iter_route_contexts

    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(world.client.app.routes):  # type: ignore[attr-defined]
        path = route.path or ""
        if path.startswith(SKIPPED) or not isinstance(route.original_route, APIRoute):
            continue
        for method in route.methods or ():
            found.add((method, path))
    return found


def test_every_route_has_an_entry(world: World) -> None:
    """A route the table does not name (or an entry for a route that is gone) fails here."""
    routes = _routes(world)
    assert sorted(routes - TABLE.keys()) == [], "routes without a rule in TABLE"
    assert sorted(TABLE.keys() - routes) == [], "TABLE entries for routes that no longer exist"


CASES = [
    (method, path, circle)
    for (method, path), entry in TABLE.items()
    for circle in (CIRCLES if entry.per_circle else ("-",))
]


def _judge(
    world: World, method: str, path: str, circle: str, table: dict[tuple[str, str], Entry]
) -> None:
    # Every principal's outcome against its rule; file routes: the bytes only to those allowed.
    entry = table[(method, path)]
    head, secret = (CARD_HEAD, CARD_HEAD) if entry.card else (world.head, world.head[:16])
    wrong: list[str] = []
    for p in PRINCIPALS:
        want = entry.rule(p, circle)
        r = call(world, method, path, p, circle, table=table)
        got = outcome(r, entry.lands, entry.limited)
        bytes_sent = r.status_code in (200, 206) and r.content.startswith(head)
        if entry.file and method == "GET" and got == OK and not bytes_sent:
            got = f"ok without the file's bytes ({r.status_code}, {len(r.content)} bytes)"
        if entry.file and want != OK and secret in r.content:
            got = f"{got} WITH the file's bytes"
        if got != want:
            wrong.append(f"{p.name}: expected {want}, got {got} ({r.status_code})")
    assert not wrong, f"{method} {path} [{circle}]\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("method", "path", "circle"), CASES, ids=[f"{m} {p} {c}" for m, p, c in CASES]
)
def test_matrix(world: World, method: str, path: str, circle: str) -> None:
    """Every principal gets the outcome its rule demands on this route (and circle)."""
    _judge(world, method, path, circle, TABLE)


CARD_CASES = [(method, path, circle) for (method, path) in CARD_TABLE for circle in CIRCLES]


@pytest.mark.parametrize(
    ("method", "path", "circle"), CARD_CASES, ids=[f"{m} {p} {c}" for m, p, c in CARD_CASES]
)
def test_card_matrix(world: World, method: str, path: str, circle: str) -> None:
    """The model card reaches exactly whoever may fetch the release's other files."""
    _judge(world, method, path, circle, CARD_TABLE)


PAGES = [
    (method, path)
    for (method, path) in TABLE
    if not path.startswith(("/api/", "/v1/")) and "/resolve/" not in path
]
UNSAFE_PAGES = [(method, path) for (method, path) in PAGES if method in UNSAFE]


@pytest.mark.parametrize(
    ("method", "path"), UNSAFE_PAGES, ids=[f"{m} {p}" for m, p in UNSAFE_PAGES]
)
def test_unsafe_page_refuses_a_session_without_csrf(world: World, method: str, path: str) -> None:
    """An admin's browser session without the CSRF token is refused (403) on every form post."""
    admin = Principal(BY_KEY["admin"], "session")
    r = call(world, method, path, admin, "research", csrf=False)
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(("method", "path"), PAGES, ids=[f"{m} {p}" for m, p in PAGES])
def test_page_ignores_a_bearer_token(world: World, method: str, path: str) -> None:
    """An admin-scope token on a page answers as for anonymous, never with the holder's data."""
    admin = BY_KEY["admin"]
    anonymous = call(world, method, path, Principal(None, "anonymous"), "in-house", csrf=False)
    r = call(world, method, path, Principal(admin, "admin"), "in-house", csrf=False)
    assert outcome(r) == outcome(anonymous), r.text
    assert outcome(r) in (OK, LOGIN, DENIED, HIDDEN)
    assert admin.email not in r.text


def test_dev_outbox_is_for_admins_only(world: World) -> None:
    """With the development outbox on, admins read it; other sessions 403; anonymous sign in."""
    settings = Settings.model_validate(
        {
            "home": world.services.settings.home,
            "database_url": world.services.settings.database_url,
            "dev_outbox": True,
        }
    )
    services = build(settings)
    with TestClient(create_app(services), follow_redirects=False) as client:
        for person, want in (("admin", OK), ("staff", DENIED), ("member-active", DENIED)):
            cookie = world.session_cookie(BY_KEY[person])
            client.cookies.clear()
            r = client.get("/outbox", headers={"Cookie": f"rf_session={cookie}"})
            assert outcome(r) == want, f"{person}: {r.status_code}"
        client.cookies.clear()
        assert outcome(client.get("/outbox")) == LOGIN

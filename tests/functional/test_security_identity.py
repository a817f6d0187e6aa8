"""Nobody acts as someone else: one regression test per account-takeover or escalation seen.

Each test is named after the attack it guards against (issue #10, items 1-5 and 8) and
drives the real app over HTTP, with a real SMTP server where mail carries the secret.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ringfence.access import grants, licences, requests
from ringfence.access.models import AccessRequest
from ringfence.accounts import services as accounts
from ringfence.accounts import tokens
from ringfence.accounts.models import APIToken, User
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import transaction
from ringfence.distribution import services as dist
from ringfence.errors import InvalidInput
from ringfence.mail.models import Mail
from ringfence.organisations.models import Institution
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.fixtures_access import PASSWORD, Inbox, make_release, make_user

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
RESET_LINK = re.compile(r"http://testserver(/password/set\?token=\S+)")
NEW_PASSWORD = "a brand new passphrase"
ANSWERS = {
    "affiliation": "Uni",
    "country": "de",
    "intended_use": "Education",
    "no_redistribution": True,
}


def csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def make_services(home: Path, smtp_port: int, **settings: object) -> Services:
    svc = build(
        Settings(
            home=home,
            mail_backend="smtp",
            smtp_port=smtp_port,
            base_url="http://testserver",
            **settings,  # type: ignore[arg-type]
        )
    )
    svc.prepare()
    with transaction(svc.sessions) as session:
        make_release(session, circle="research")
        make_user(session, "admin@lab.example", role="admin", secrets=svc.secrets)
        make_user(session, "rev@lab.example", role="reviewer", secrets=svc.secrets)
        make_user(session, "member@uni.example")
    return svc


@pytest.fixture
def svc(home: Path, smtp_server: tuple[int, Inbox]) -> Services:
    return make_services(home, smtp_server[0])


@pytest.fixture
def app_client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc)) as client:
        yield client


def signed_in(client: TestClient, svc: Services, email: str) -> TestClient:
    """`client` with a browser session of `email` (sessions made directly: no 2FA prompt)."""
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        raw = accounts.start_session(session, user, ip=None, user_agent="test")
    client.cookies.set("rf_session", raw)
    return client


def token_for(svc: Services, email: str, scope: str) -> str:
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        return tokens.create_token(session, user, scope, actor="test").raw


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def count(svc: Services, query: object) -> int:
    with svc.sessions() as session:
        return int(session.scalar(query) or 0)  # type: ignore[call-overload]


def events(svc: Services, tag: str) -> list[AuditEvent]:
    with svc.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag)))


def reset_password(client: TestClient, inbox: Inbox, email: str, password: str) -> None:
    """Ask for a reset link, read it from the real mail, choose a new password."""
    page = client.get("/password/reset")
    client.post("/password/reset", data={"email": email, "csrf_token": csrf(page.text)})
    match = RESET_LINK.search(inbox.last_body(email))
    assert match, "the reset mail has no link"
    form = client.get(match.group(1))
    token = match.group(1).split("token=", 1)[1]
    done = client.post(
        "/password/set",
        data={"token": token, "password": password, "csrf_token": csrf(form.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def approved_member(svc: Services, email: str = "member@uni.example") -> None:
    """`email` holds an active grant for tiny@1.0 and accepted its licence."""
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        release = session.scalars(select(Release)).one()
        grants.issue_grant(session, user, release, via="direct", granted_by="test")
        assert release.licence is not None
        licences.accept_licence(
            session, user, release, text_sha256=release.licence.sha256, ip=None, user_agent=None
        )


def link_for(svc: Services, email: str = "member@uni.example") -> str:
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        release = session.scalars(select(Release)).one()
        return dist.create_link_for(session, svc, release, user, actor=email).token


# 1. The development outbox was public, and the default: a reset link for the admin on a page.


def test_outbox_admin_takeover_reset_link_is_never_public(home: Path) -> None:
    # Default settings, as `ringfence serve` runs with none set: no outbox, anywhere.
    svc = build(Settings(home=home, base_url="http://testserver"))
    svc.prepare()
    with transaction(svc.sessions) as session:
        make_user(session, "admin@lab.example", role="admin", secrets=svc.secrets)
    app_client = TestClient(create_app(svc))
    page = app_client.get("/password/reset")
    app_client.post(
        "/password/reset", data={"email": "admin@lab.example", "csrf_token": csrf(page.text)}
    )
    reset_mails = count(svc, select(func.count(Mail.id)).where(Mail.to == "admin@lab.example"))
    assert reset_mails == 1
    # Without the development setting the outbox does not exist, for anyone.
    assert app_client.get("/outbox").status_code == 404
    assert signed_in(app_client, svc, "admin@lab.example").get("/outbox").status_code == 404


def test_outbox_when_on_is_for_admins_only(
    home: Path, smtp_server: tuple[int, Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    svc = make_services(home, smtp_server[0], dev_outbox=True)
    with TestClient(create_app(svc)) as client:
        assert "development outbox is ON" in caplog.text  # the server says so at start
        page = client.get("/password/reset")
        client.post(
            "/password/reset", data={"email": "admin@lab.example", "csrf_token": csrf(page.text)}
        )
        anonymous = client.get("/outbox", follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
        assert "password/set" not in anonymous.text
        member = signed_in(client, svc, "member@uni.example").get("/outbox")
        assert member.status_code == 403 and "password/set" not in member.text
        admin = signed_in(client, svc, "admin@lab.example").get("/outbox")
        assert admin.status_code == 200 and "password/set?token=" in admin.text


# 2. Any API token acted on pages with a session's full rights, CSRF skipped.


def test_read_token_cannot_mint_an_admin_token_on_the_account_page(
    app_client: TestClient, svc: Services
) -> None:
    read = token_for(svc, "admin@lab.example", "read")
    r = app_client.post(
        "/account/tokens",
        data={"scope": "admin", "name": "escalated"},
        headers=bearer(read),
        follow_redirects=False,
    )
    assert r.status_code in (303, 401, 403)
    assert "rf_" not in r.text
    assert count(svc, select(func.count(APIToken.id))) == 1


def test_reviewer_read_token_cannot_decide_on_the_review_page(
    app_client: TestClient, svc: Services
) -> None:
    with transaction(svc.sessions) as session:
        member = session.scalars(select(User).where(User.email == "member@uni.example")).one()
        req = requests.submit_request(
            session, member, session.scalars(select(Release)).one(), ANSWERS
        )
        request_id = req.id
    read = token_for(svc, "rev@lab.example", "read")
    r = app_client.post(
        "/review/decide",
        data={"ids": str(request_id), "action": "approve", "reason": "ok"},
        headers=bearer(read),
        follow_redirects=False,
    )
    assert r.status_code in (303, 401, 403)
    with svc.sessions() as session:
        assert session.get(AccessRequest, request_id).state == "pending"  # type: ignore[union-attr]


def test_admin_read_token_opens_no_admin_page(app_client: TestClient, svc: Services) -> None:
    read = token_for(svc, "admin@lab.example", "read")
    audit = app_client.get("/admin/audit", headers=bearer(read), follow_redirects=False)
    assert audit.status_code == 303 and audit.headers["location"].startswith("/login")
    made = app_client.post(
        "/admin/institutions",
        data={"name": "Evil Corp", "domains": "evil.example"},
        headers=bearer(read),
        follow_redirects=False,
    )
    assert made.status_code in (303, 401, 403)
    assert count(svc, select(func.count(Institution.id))) == 0
    # The JSON API refuses the same token for admin work, and ignores a session cookie.
    assert app_client.get("/api/v1/audit/events", headers=bearer(read)).status_code == 403
    cookie_only = signed_in(app_client, svc, "admin@lab.example")
    assert cookie_only.get("/api/v1/audit/events").status_code == 401


# 3. Pre-hijacking: a squatter signs up with the victim's address and keeps a token.


def test_account_pre_hijacking_leaves_the_squatter_nothing(
    app_client: TestClient, svc: Services, smtp_server: tuple[int, Inbox]
) -> None:
    _, inbox = smtp_server
    victim = "victim@uni.example"
    squatter = TestClient(app_client.app)
    page = squatter.get("/signup")
    squatter.post(
        "/signup",
        data={"email": victim, "password": "squatters own secret", "csrf_token": csrf(page.text)},
    )
    login = squatter.get("/login")
    signed = squatter.post(
        "/login",
        data={"email": victim, "password": "squatters own secret", "csrf_token": csrf(login.text)},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    account = squatter.get("/account")
    refused = squatter.post(
        "/account/tokens",
        data={"scope": "download", "name": "x", "csrf_token": csrf(account.text)},
    )
    assert refused.status_code == 403 and "verify your address" in refused.text
    assert count(svc, select(func.count(APIToken.id))) == 0
    # A token the squatter got some other way (made before this rule) dies with the reset.
    raw = "rf_" + "s" * 43
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == victim)).one()
        session.add(
            APIToken(
                user_id=user.id,
                prefix=raw[:10],
                token_hash=hashlib.sha256(raw.encode()).hexdigest(),
                scope="download",
            )
        )
    reset_password(TestClient(app_client.app), inbox, victim, NEW_PASSWORD)
    assert squatter.get("/account", follow_redirects=False).status_code == 303
    assert app_client.get("/api/v1/access/grants", headers=bearer(raw)).status_code == 401
    approved_member(svc, victim)
    hub = app_client.get("/api/models/lab/tiny/revision/1.0", headers=bearer(raw))
    assert hub.status_code == 401


def test_unverified_account_cannot_request_or_download(
    app_client: TestClient, svc: Services
) -> None:
    with transaction(svc.sessions) as session:
        make_user(session, "fresh@uni.example", verified=False)
    client = signed_in(app_client, svc, "fresh@uni.example")
    page = client.get("/models/tiny/1.0")
    r = client.post("/models/tiny/1.0/request", data={**ANSWERS, "csrf_token": csrf(page.text)})
    assert r.status_code == 403 and "verify your address" in r.text
    assert count(svc, select(func.count(AccessRequest.id))) == 0
    approved_member(svc, "fresh@uni.example")  # even a grant made by hand does not download
    with svc.sessions() as session:
        user = session.scalars(select(User).where(User.email == "fresh@uni.example")).one()
        release = session.scalars(select(Release)).one()
        with pytest.raises(Exception, match="verify your address"):
            dist.create_link_for(session, svc, release, user, actor=user.email)


# 4. Setting a password ended sessions but kept the account's tokens and download links.


def test_password_set_ends_tokens_and_links(
    app_client: TestClient, svc: Services, smtp_server: tuple[int, Inbox]
) -> None:
    approved_member(svc)
    raw = token_for(svc, "member@uni.example", "download")
    link = link_for(svc)
    assert app_client.get(f"/d/{link}").status_code == 200
    assert app_client.get("/api/v1/access/grants", headers=bearer(raw)).status_code == 200
    reset_password(TestClient(app_client.app), smtp_server[1], "member@uni.example", NEW_PASSWORD)
    assert app_client.get("/api/v1/access/grants", headers=bearer(raw)).status_code == 401
    dead = app_client.get(f"/d/{link}")
    assert dead.status_code == 403 and "revoked" in dead.text
    (event,) = events(svc, EventTag.Account.PasswordSet)
    assert event.payload["tokens_revoked"] == 1 and event.payload["links_revoked"] == 1


# 5. A link made under a revoked grant worked again once the grant was re-approved.


def test_link_of_a_revoked_grant_stays_dead_after_reapproval(
    app_client: TestClient, svc: Services
) -> None:
    approved_member(svc)
    old = link_for(svc)
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == "member@uni.example")).one()
        (grant,) = grants.list_grants(session, user=user)
        grants.revoke_grant(session, grant, reason="leak under investigation", actor="test")
    assert app_client.get(f"/d/{old}").status_code == 403
    approved_member(svc)  # approved again: the same grant row, a new issuance
    again = app_client.get(f"/d/{old}")
    assert again.status_code == 403 and "earlier grant" in again.text
    assert app_client.get(f"/d/{link_for(svc)}").status_code == 200


# 8. Lower: timing, weak passwords, unlimited mails, anonymous refusals, the original's hash.


class CountingHasher(type(accounts.hasher)):  # type: ignore[misc]
    """The real argon2 hasher, counting its hashes (sign-up's cost is argon2's)."""

    calls = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        CountingHasher.calls += 1
        return str(super().hash(password, salt=salt))


def test_signup_of_a_known_address_costs_a_password_hash(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts, "hasher", CountingHasher())
    with transaction(svc.sessions) as session:
        for address in ("member@uni.example", "newcomer@uni.example"):
            before = CountingHasher.calls
            accounts.sign_up(
                session, svc.secrets, address, PASSWORD, ip="10.0.0.1", base_url="http://t"
            )
            assert CountingHasher.calls == before + 1, address


@pytest.mark.parametrize(
    "password",
    ["aaaaaaaaaa", "password123", "1234567890", "qwertyuiop", "iloveyou12", "member@uni.example"],
)
def test_common_and_patterned_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidInput, match="password"):
        accounts.check_password(password, email="member@uni.example")


def test_good_passphrases_pass_the_policy() -> None:
    for password in (PASSWORD, NEW_PASSWORD, "Tr0ub4dor&3-zebra"):
        accounts.check_password(password, email="member@uni.example")


def test_account_mails_are_limited_per_address(svc: Services) -> None:
    for i in range(accounts.MAIL_PER_ADDRESS + 3):
        with transaction(svc.sessions) as session:
            accounts.request_password_reset(
                session, svc.secrets, "member@uni.example", ip=f"10.0.0.{i}", base_url="http://t"
            )
    sent = count(svc, select(func.count(Mail.id)).where(Mail.to == "member@uni.example"))
    assert sent == accounts.MAIL_PER_ADDRESS


def test_account_mails_are_limited_per_ip(app_client: TestClient, svc: Services) -> None:
    page = app_client.get("/password/reset")
    token = csrf(page.text)
    statuses = [
        app_client.post(
            "/password/reset",
            data={"email": f"nobody{i}@uni.example", "csrf_token": token},
            follow_redirects=False,
        ).status_code
        for i in range(accounts.MAIL_PER_IP + 1)
    ]
    assert statuses[:-1] == [303] * accounts.MAIL_PER_IP
    assert statuses[-1] == 429


def test_refused_download_names_the_known_caller(app_client: TestClient, svc: Services) -> None:
    read = token_for(svc, "member@uni.example", "read")
    r = app_client.get("/lab/tiny/resolve/1.0/config.json", headers=bearer(read))
    assert r.status_code == 403 and "'read' scope" in r.headers["x-error-message"]
    (event,) = events(svc, EventTag.Distribution.DownloadRefused)
    assert event.actor == "member@uni.example"


def test_only_the_lab_sees_the_originals_manifest_hash(
    app_client: TestClient, svc: Services
) -> None:
    member = token_for(svc, "member@uni.example", "read")
    admin = token_for(svc, "admin@lab.example", "read")
    theirs = app_client.get("/api/v1/releases/tiny/1.0", headers=bearer(member)).json()
    assert theirs["manifest_sha256"] is None  # no copy of their own yet
    assert app_client.get("/api/v1/releases/tiny/1.0").json()["manifest_sha256"] is None
    ours = app_client.get("/api/v1/releases/tiny/1.0", headers=bearer(admin)).json()
    assert ours["manifest_sha256"] == "0" * 64
    page = signed_in(app_client, svc, "member@uni.example").get("/models/tiny/1.0")
    assert "0" * 64 not in page.text


# Two-factor sign-in is required of the roles that decide, as PyPI requires of maintainers.


def test_admin_without_two_factor_acts_nowhere_until_enrolled(
    app_client: TestClient, svc: Services
) -> None:
    with transaction(svc.sessions) as session:
        make_user(session, "new-admin@lab.example", role="admin", two_factor=False)
    raw = token_for(svc, "new-admin@lab.example", "admin")
    refused = app_client.get("/api/v1/audit/events", headers=bearer(raw))
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "TwoFactorRequired"
    browser = signed_in(app_client, svc, "new-admin@lab.example")
    page = browser.get("/admin/users", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/account/two-factor"
    assert browser.get("/account/two-factor").status_code == 200  # where they turn it on
    enrolled = token_for(svc, "admin@lab.example", "admin")
    assert app_client.get("/api/v1/audit/events", headers=bearer(enrolled)).status_code == 200

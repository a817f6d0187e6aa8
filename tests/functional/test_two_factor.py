"""Two-factor sign-in over HTTP, with a real SMTP server capturing the mail, and the CLI reset."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from ringfence.accounts import services as accounts
from ringfence.accounts.models import User
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.web.security import SESSION_COOKIE
from ringfence.wiring import Services, build
from tests.conftest import CliRunner
from tests.fixtures_access import PASSWORD, Inbox, make_user, totp_code

ADMIN = "admin@lab.example"
MEMBER = "m@uni.example"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
HALF = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def svc(home: Path, smtp_server: tuple[int, Inbox]) -> Services:
    built = build(
        Settings(
            home=home, mail_backend="smtp", smtp_port=smtp_server[0], base_url="http://testserver"
        )
    )
    built.prepare()
    with transaction(built.sessions) as session:
        make_user(session, ADMIN, role="admin", secrets=built.secrets)
        make_user(session, MEMBER)
    return built


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc)) as c:
        yield c


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _password_step(client: TestClient, email: str) -> Response:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )


def _code_step(client: TestClient, challenge: Response, code: str) -> Response:
    half = HALF.search(challenge.text)
    assert half, "no code step after the password"
    return client.post(
        "/login/two-factor",
        data={"token": half.group(1), "code": code, "csrf_token": _csrf(challenge.text)},
        follow_redirects=False,
    )


def _signed_in(client: TestClient) -> bool:
    return client.get("/account", follow_redirects=False).status_code == 200


def _events(svc: Services, tag: str) -> list[AuditEvent]:
    with svc.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag)))


def test_enrol_and_confirm_from_the_account_page(
    client: TestClient, svc: Services, smtp_server: tuple[int, Inbox]
) -> None:
    inbox = smtp_server[1]
    assert _password_step(client, MEMBER).status_code == 303
    page = client.get("/account")
    assert 'href="/account/two-factor"' in page.text
    page = client.get("/account/two-factor")
    assert "is <strong>off</strong>" in page.text
    page = client.post("/account/two-factor/begin", data={"csrf_token": _csrf(page.text)})
    secret = re.search(r'data-testid="two-factor-secret">([A-Z2-7]+)<', page.text)
    assert secret, page.text
    assert f"otpauth://totp/ringfence:{MEMBER}?secret={secret.group(1)}&amp;issuer=ringfence" in (
        page.text
    )
    assert 'src="data:image/svg+xml' in page.text  # the QR code, drawn by the server
    wrong = client.post(
        "/account/two-factor/confirm", data={"code": "000000", "csrf_token": _csrf(page.text)}
    )
    assert wrong.status_code == 400 and secret.group(1) in wrong.text  # still setting up
    done = client.post(
        "/account/two-factor/confirm",
        data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": _csrf(page.text)},
    )
    codes = re.findall(r"<li>([0-9a-f]{16})</li>", done.text)
    assert done.status_code == 200 and len(codes) == 10
    assert "Two-factor sign-in is on" in inbox.to(MEMBER)[-1]["Subject"]
    # Neither the secret nor the recovery codes are ever shown again.
    later = client.get("/account/two-factor")
    assert "is <strong>on</strong>" in later.text and "10 unused recovery codes" in later.text
    assert secret.group(1) not in later.text and codes[0] not in later.text
    assert len(_events(svc, EventTag.Account.TwoFactorEnabled)) == 1


def test_sign_in_needs_the_code(client: TestClient, svc: Services) -> None:
    challenge = _password_step(client, ADMIN)
    assert challenge.status_code == 200 and "/login/two-factor" in challenge.text
    assert SESSION_COOKIE not in client.cookies and not _signed_in(client)
    assert not _events(svc, EventTag.Account.LoginSucceeded)
    r = _code_step(client, challenge, totp_code(svc.sessions, ADMIN))
    assert r.status_code == 303 and SESSION_COOKIE in client.cookies and _signed_in(client)
    [event] = _events(svc, EventTag.Account.LoginSucceeded)
    assert event.payload == {"second_factor": "totp"}


def test_wrong_code_is_refused_with_one_message_and_audited(
    client: TestClient, svc: Services
) -> None:
    challenge = _password_step(client, ADMIN)
    messages = set()
    for code in ("000000", "not-a-code", ""):
        r = _code_step(client, challenge, code)
        assert r.status_code == 401 and not _signed_in(client)
        found = re.search(r'data-testid="error">([^<]+)<', r.text)
        assert found
        messages.add(found.group(1))
    assert len(messages) == 1
    failed = _events(svc, EventTag.Account.TwoFactorFailed)
    assert len(failed) == 3 and failed[0].actor == ADMIN and failed[0].ip


def test_wrong_codes_share_the_password_limit(client: TestClient) -> None:
    for _ in range(5):
        _code_step(client, _password_step(client, ADMIN), "000000")
    assert _password_step(client, ADMIN).status_code == 429


def test_replayed_code_is_refused(client: TestClient, svc: Services) -> None:
    code = totp_code(svc.sessions, ADMIN)
    assert _code_step(client, _password_step(client, ADMIN), code).status_code == 303
    other = TestClient(client.app)
    r = _code_step(other, _password_step(other, ADMIN), code)
    assert r.status_code == 401 and not _signed_in(other)
    [failed] = _events(svc, EventTag.Account.TwoFactorFailed)
    assert failed.payload["reason"] == "replayed"


def _enrol_member(client: TestClient) -> tuple[str, list[str]]:
    assert _password_step(client, MEMBER).status_code == 303
    page = client.get("/account/two-factor")
    page = client.post("/account/two-factor/begin", data={"csrf_token": _csrf(page.text)})
    secret = re.search(r'data-testid="two-factor-secret">([A-Z2-7]+)<', page.text)
    assert secret
    done = client.post(
        "/account/two-factor/confirm",
        data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": _csrf(page.text)},
    )
    return secret.group(1), re.findall(r"<li>([0-9a-f]{16})</li>", done.text)


def test_recovery_code_works_once_audited_and_mailed(
    client: TestClient, svc: Services, smtp_server: tuple[int, Inbox]
) -> None:
    inbox = smtp_server[1]
    _, codes = _enrol_member(client)
    fresh = TestClient(client.app)
    assert _code_step(fresh, _password_step(fresh, MEMBER), codes[0]).status_code == 303
    assert _signed_in(fresh)
    assert "recovery code was used" in inbox.to(MEMBER)[-1]["Subject"]
    [used] = _events(svc, EventTag.Account.RecoveryCodeUsed)
    assert used.payload == {"left": 9}
    again = TestClient(client.app)
    r = _code_step(again, _password_step(again, MEMBER), codes[0])
    assert r.status_code == 401 and not _signed_in(again)


def test_disable_needs_a_code(
    client: TestClient, svc: Services, smtp_server: tuple[int, Inbox]
) -> None:
    inbox = smtp_server[1]
    _, codes = _enrol_member(client)
    page = client.get("/account/two-factor")
    r = client.post("/account/two-factor/disable", data={"csrf_token": _csrf(page.text)})
    assert r.status_code == 403  # no code at all
    r = client.post(
        "/account/two-factor/disable", data={"code": "000000", "csrf_token": _csrf(page.text)}
    )
    assert r.status_code == 403 and "is <strong>on</strong>" in r.text
    assert _events(svc, EventTag.Account.TwoFactorFailed)
    r = client.post(
        "/account/two-factor/disable",
        data={"code": codes[1], "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "is <strong>off</strong>" in client.get("/account/two-factor").text
    assert "is off" in inbox.to(MEMBER)[-1]["Subject"]
    assert _events(svc, EventTag.Account.TwoFactorDisabled)


def test_regenerated_recovery_codes_are_shown_once(client: TestClient, svc: Services) -> None:
    secret, old = _enrol_member(client)
    page = client.get("/account/two-factor")
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: this one was just used
    r = client.post(
        "/account/two-factor/recovery-codes", data={"code": code, "csrf_token": _csrf(page.text)}
    )
    new = re.findall(r"<li>([0-9a-f]{16})</li>", r.text)
    assert r.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    assert _events(svc, EventTag.Account.RecoveryCodesRegenerated)


def test_cli_two_factor_reset(
    client: TestClient,
    cli: CliRunner,
    svc: Services,
    smtp_server: tuple[int, Inbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, inbox = smtp_server
    monkeypatch.setenv("RINGFENCE_MAIL_BACKEND", "smtp")
    monkeypatch.setenv("RINGFENCE_SMTP_PORT", str(port))
    assert cli("users", "two-factor-reset", ADMIN).code != 0  # --reason is required
    result = cli(
        "users", "two-factor-reset", ADMIN, "--reason", "lost phone; called back", "--json"
    )
    assert result.code == 0, result.err
    assert result.json()["two_factor"] is False  # type: ignore[index]
    assert "lost phone; called back" in inbox.last_body(ADMIN)
    [reset] = _events(svc, EventTag.Account.TwoFactorReset)
    assert reset.actor == "cli" and reset.payload == {"reason": "lost phone; called back"}
    # The password alone signs in again; the security layer then asks to enrol anew.
    assert _password_step(client, ADMIN).status_code == 303
    again = cli("users", "two-factor-reset", ADMIN, "--reason", "twice")
    assert again.code != 0 and "not on" in again.err + again.out


def test_half_sign_in_token_alone_never_gives_a_session(client: TestClient) -> None:
    challenge = _password_step(client, ADMIN)
    half = HALF.search(challenge.text)
    assert half
    csrf = _csrf(challenge.text)
    for data in ({"token": half.group(1)}, {"token": half.group(1), "code": ""}):
        r = client.post("/login/two-factor", data={**data, "csrf_token": csrf})
        assert r.status_code != 303 and SESSION_COOKIE not in r.cookies
    # Nor does it work as a session cookie, nor reach the code step's page without a form.
    client.cookies.set(SESSION_COOKIE, half.group(1))
    assert not _signed_in(client)
    client.cookies.delete(SESSION_COOKIE)
    r = client.get("/login/two-factor", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_half_sign_in_made_before_a_password_change_is_dead(
    client: TestClient, svc: Services
) -> None:
    challenge = _password_step(client, ADMIN)
    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        user.password_hash = accounts.hasher.hash("a brand new password")
    r = _code_step(client, challenge, totp_code(svc.sessions, ADMIN))
    assert r.status_code == 403 and "sign in again" in r.text and not _signed_in(client)


def test_api_token_cannot_change_two_factor(client: TestClient, svc: Services) -> None:
    from ringfence.accounts.tokens import create_token

    with transaction(svc.sessions) as session:
        user = session.scalars(select(User).where(User.email == MEMBER)).one()
        raw = create_token(session, user, "read", actor="test").raw
    bearer = {"Authorization": f"Bearer {raw}"}
    # Pages ignore tokens: without a browser session the caller is anonymous there.
    tokens_only = TestClient(client.app)
    assert tokens_only.post("/account/two-factor/begin", headers=bearer).status_code == 403
    page = tokens_only.get("/account/two-factor", headers=bearer, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    with svc.sessions() as session:
        assert (
            session.scalars(select(User).where(User.email == MEMBER)).one().totp_secret_sealed
            is None
        )

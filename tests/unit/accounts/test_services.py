"""Account services: sign-up, verification, sign-in limits, password links, sessions, tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.accounts import services as accounts
from ringfence.accounts import tokens
from ringfence.accounts.ratelimit import LoginLimiter
from ringfence.errors import (
    AuthenticationRequired,
    InvalidInput,
    PermissionDenied,
    RateLimited,
    TokenExpired,
    TokenInvalid,
)
from ringfence.mail.models import Mail
from ringfence.wiring import Services
from tests.fixtures_access import PASSWORD, make_user

ANSWERS = {
    "affiliation": "Uni",
    "country": "FR",
    "intended_use": "Research",
    "no_redistribution": "on",
}


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as s:
        yield s
        s.commit()


def _mails(session: Session, to: str) -> list[Mail]:
    return list(session.scalars(select(Mail).where(Mail.to == to).order_by(Mail.id)))


def test_sign_up_verify_and_no_enumeration(session: Session, services: Services) -> None:
    accounts.sign_up(
        session, services.secrets, "Ada@Uni.example", PASSWORD, ip="1.2.3.4", base_url="http://x"
    )
    user = accounts.get_user(session, "ada@uni.example")
    assert not user.email_verified
    body = _mails(session, "ada@uni.example")[0].body
    token = body.split("token=")[1].split()[0]
    # Signing up again answers the same and mails the owner instead of failing.
    accounts.sign_up(
        session,
        services.secrets,
        "ada@uni.example",
        "another password!",
        ip=None,
        base_url="http://x",
    )
    assert "already has one" in _mails(session, "ada@uni.example")[1].body
    with pytest.raises(TokenInvalid):
        accounts.verify_email(session, services.secrets, token[:-2] + "xx", ip=None)
    assert accounts.verify_email(session, services.secrets, token, ip=None).email_verified


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [("not-an-email", PASSWORD, "not an email"), ("a@b.example", "short", "at least 10")],
)
def test_sign_up_validates(
    session: Session, services: Services, email: str, password: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        accounts.sign_up(session, services.secrets, email, password, ip=None, base_url="")


def test_login_failures_read_the_same_and_are_rate_limited(session: Session) -> None:
    make_user(session, "bob@lab.example")
    limiter = LoginLimiter(per_account=3)
    messages = set()
    for email, password in (("bob@lab.example", "wrong password"), ("nobody@x.example", PASSWORD)):
        with pytest.raises(AuthenticationRequired) as err:
            accounts.authenticate(session, limiter, email, password, ip="9.9.9.9")
        messages.add(err.value.diagnostics())
    assert len(messages) == 1
    assert accounts.authenticate(session, limiter, "bob@lab.example", PASSWORD, ip="9.9.9.9")
    for _ in range(3):
        with pytest.raises(AuthenticationRequired):
            accounts.authenticate(session, limiter, "bob@lab.example", "nope nope", ip="9.9.9.9")
    with pytest.raises(RateLimited):
        accounts.authenticate(session, limiter, "bob@lab.example", PASSWORD, ip="9.9.9.9")
    # Another client is not locked out by someone else's guessing.
    assert accounts.authenticate(session, limiter, "bob@lab.example", PASSWORD, ip="8.8.8.8")


def test_password_link_works_once(session: Session, services: Services) -> None:
    user = make_user(session, "carol@lab.example")
    token = accounts.mail_link_token(services.secrets, "set-password", user)
    accounts.set_password(session, services.secrets, token, "a brand new password", ip=None)
    with pytest.raises(TokenExpired):
        accounts.set_password(session, services.secrets, token, "yet another password", ip=None)


def test_sessions_and_tokens(session: Session, services: Services) -> None:
    admin = make_user(session, "root@lab.example", role="admin", secrets=services.secrets)
    member = make_user(session, "m@uni.example")
    raw = accounts.start_session(session, member, ip=None, user_agent="ua")
    assert accounts.user_from_session(session, raw) is member
    assert accounts.user_from_session(session, raw + "x") is None
    with pytest.raises(PermissionDenied):
        tokens.create_token(session, member, "admin", actor="test")
    new = tokens.create_token(session, admin, "download", actor="test")
    assert new.raw.startswith("rf_") and new.token.token_hash != new.raw
    found = tokens.user_from_token(session, new.raw)
    assert found.user is admin and found.scope == "download"
    tokens.revoke_token(session, admin, new.token.id, actor="test")
    with pytest.raises(AuthenticationRequired):
        tokens.user_from_token(session, new.raw)


def test_unverified_account_cannot_create_tokens(session: Session) -> None:
    squatter = make_user(session, "victim@uni.example", verified=False)
    with pytest.raises(PermissionDenied, match="verify"):
        tokens.create_token(session, squatter, "download", actor="test")

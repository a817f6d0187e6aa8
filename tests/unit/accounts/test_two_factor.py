"""Two-factor services: enrolment, codes in their window and never twice, recovery, reset."""

from __future__ import annotations

from collections.abc import Iterator

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.accounts import services as accounts
from ringfence.accounts import two_factor
from ringfence.accounts.models import RecoveryCode, User, WebSession
from ringfence.accounts.ratelimit import LoginLimiter
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.errors import (
    AuthenticationRequired,
    Conflict,
    IntegrityError,
    InvalidInput,
    RateLimited,
    TokenExpired,
    TokenInvalid,
)
from ringfence.mail.models import Mail
from ringfence.wiring import Services
from tests.fixtures_access import KNOWN_SECRET, PASSWORD, make_user


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as s:
        yield s
        s.commit()


def _tags(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.tag).order_by(AuditEvent.seq)))


def _subjects(session: Session, to: str) -> list[str]:
    return list(session.scalars(select(Mail.subject).where(Mail.to == to).order_by(Mail.id)))


def _enrolled(session: Session, services: Services, email: str = "m@uni.example") -> User:
    return make_user(session, email, secrets=services.secrets, two_factor=True)


def test_enrolment_needs_a_right_code_and_gives_ten_recovery_codes(
    session: Session, services: Services
) -> None:
    user = make_user(session, "m@uni.example")
    enrolment = two_factor.begin_enrolment(session, services.secrets, user)
    assert enrolment.uri == (
        f"otpauth://totp/ringfence:m@uni.example?secret={enrolment.secret}&issuer=ringfence"
    )
    assert not user.two_factor_enabled
    with pytest.raises(InvalidInput):
        two_factor.confirm_enrolment(
            session, services.secrets, user, "000000", ip=None, base_url=""
        )
    code = pyotp.TOTP(enrolment.secret).now()
    codes = two_factor.confirm_enrolment(
        session, services.secrets, user, code, ip=None, base_url=""
    )
    assert user.two_factor_enabled and len(set(codes)) == two_factor.RECOVERY_CODE_COUNT == 10
    stored = set(session.scalars(select(RecoveryCode.code_hash)))
    assert not stored & set(codes), "recovery codes are stored as hashes only"
    assert EventTag.Account.TwoFactorEnabled in _tags(session)
    assert "Two-factor sign-in is on" in _subjects(session, user.email)[-1]
    # Once on, the secret is never handed out again.
    assert two_factor.pending_enrolment(services.secrets, user) is None
    with pytest.raises(Conflict):
        two_factor.begin_enrolment(session, services.secrets, user)


def test_secret_is_sealed_and_bound_to_its_user(session: Session, services: Services) -> None:
    user = _enrolled(session, services)
    assert user.totp_secret_sealed and KNOWN_SECRET not in user.totp_secret_sealed
    other = make_user(session, "o@uni.example")
    other.totp_secret_sealed, other.two_factor_enabled_at = user.totp_secret_sealed, utcnow()
    code = pyotp.TOTP(KNOWN_SECRET).now()
    with pytest.raises(IntegrityError):
        two_factor.verify(session, services.secrets, other, code, ip=None)


def test_codes_of_neighbouring_steps_pass_once_and_never_again(
    session: Session, services: Services
) -> None:
    user = _enrolled(session, services)
    totp, now = pyotp.TOTP(KNOWN_SECRET), utcnow()
    step = totp.timecode(now)
    far = totp.generate_otp(step + 2)
    with pytest.raises(AuthenticationRequired):
        two_factor.verify(session, services.secrets, user, far, ip=None, now=now)
    previous = totp.generate_otp(step - 1)
    assert two_factor.verify(session, services.secrets, user, previous, ip=None, now=now) == "totp"
    with pytest.raises(AuthenticationRequired):  # the same code again: replayed
        two_factor.verify(session, services.secrets, user, previous, ip=None, now=now)
    current = totp.generate_otp(step)
    assert (
        two_factor.verify(
            session, services.secrets, user, current[:3] + " " + current[3:], ip=None, now=now
        )
        == "totp"
    )
    with pytest.raises(AuthenticationRequired):  # an older step after a newer one
        two_factor.verify(session, services.secrets, user, previous, ip=None, now=now)
    failures = session.scalars(
        select(AuditEvent.payload).where(AuditEvent.tag == EventTag.Account.TwoFactorFailed)
    )
    assert [p["reason"] for p in failures] == ["wrong", "replayed", "replayed"]


def test_recovery_code_works_once_and_is_audited_and_mailed(
    session: Session, services: Services
) -> None:
    user = _enrolled(session, services)
    codes = two_factor.regenerate_recovery_codes(
        session, services.secrets, LoginLimiter(), user, pyotp.TOTP(KNOWN_SECRET).now(), ip=None
    )
    code = codes[3].upper()[:8] + "-" + codes[3][8:]  # typed in another case, with a dash
    assert two_factor.verify(session, services.secrets, user, code, ip=None) == "recovery_code"
    assert two_factor.unused_recovery_codes(session, user) == 9
    with pytest.raises(AuthenticationRequired):
        two_factor.verify(session, services.secrets, user, codes[3], ip=None)
    assert EventTag.Account.RecoveryCodeUsed in _tags(session)
    assert "recovery code was used" in _subjects(session, user.email)[-1]


def test_regenerated_recovery_codes_replace_the_old_ones(
    session: Session, services: Services
) -> None:
    user = _enrolled(session, services)
    totp, limiter, now = pyotp.TOTP(KNOWN_SECRET), LoginLimiter(), utcnow()
    step = totp.timecode(now)
    first = two_factor.regenerate_recovery_codes(
        session, services.secrets, limiter, user, totp.generate_otp(step), ip=None, now=now
    )
    second = two_factor.regenerate_recovery_codes(
        session, services.secrets, limiter, user, totp.generate_otp(step + 1), ip=None, now=now
    )
    assert not set(first) & set(second)
    with pytest.raises(AuthenticationRequired):
        two_factor.verify(session, services.secrets, user, first[0], ip=None)
    assert _tags(session).count(EventTag.Account.RecoveryCodesRegenerated) == 2


def test_disable_needs_a_code(session: Session, services: Services) -> None:
    user = _enrolled(session, services)
    with pytest.raises(AuthenticationRequired):
        two_factor.disable(session, services.secrets, LoginLimiter(), user, "123456", ip=None)
    assert user.two_factor_enabled
    code = pyotp.TOTP(KNOWN_SECRET).now()
    two_factor.disable(session, services.secrets, LoginLimiter(), user, code, ip=None)
    assert not user.two_factor_enabled and user.totp_secret_sealed is None
    assert EventTag.Account.TwoFactorDisabled in _tags(session)
    assert "is off" in _subjects(session, user.email)[-1]


def test_reset_needs_a_reason_and_signs_the_person_out(
    session: Session, services: Services
) -> None:
    user = _enrolled(session, services)
    accounts.start_session(session, user, ip=None, user_agent=None)
    with pytest.raises(InvalidInput):
        two_factor.reset(session, user, reason="  ", actor="cli")
    two_factor.reset(session, user, reason="lost phone, confirmed by video call", actor="cli")
    assert not user.two_factor_enabled
    assert session.scalars(select(WebSession).where(WebSession.user_id == user.id)).first() is None
    assert "lost phone" in session.scalars(select(Mail.body).order_by(Mail.id.desc())).first()
    with pytest.raises(Conflict):
        two_factor.reset(session, user, reason="again", actor="cli")


def test_must_enrol_only_admins_and_reviewers_without_two_factor(
    session: Session, services: Services
) -> None:
    assert two_factor.REQUIRED_ROLES == ("admin", "reviewer")
    assert two_factor.must_enrol(
        make_user(session, "a@lab.example", role="admin", two_factor=False)
    )
    assert two_factor.must_enrol(
        make_user(session, "r@lab.example", role="reviewer", two_factor=False)
    )
    assert not two_factor.must_enrol(
        make_user(session, "a2@lab.example", role="admin", secrets=services.secrets)
    )
    assert not two_factor.must_enrol(make_user(session, "s@lab.example", role="staff"))
    assert not two_factor.must_enrol(make_user(session, "m@uni.example"))


def test_wrong_codes_count_against_the_sign_in_limit_a_right_password_does_not_clear(
    session: Session, services: Services
) -> None:
    user = _enrolled(session, services)
    limiter = LoginLimiter(per_account=3)
    for _ in range(3):
        accounts.authenticate(session, limiter, user.email, PASSWORD, ip="9.9.9.9")
        token = two_factor.half_sign_in_token(services.secrets, user)
        with pytest.raises(AuthenticationRequired):
            two_factor.complete_sign_in(
                session, services.secrets, limiter, token, "000000", ip="9.9.9.9"
            )
    with pytest.raises(RateLimited):
        accounts.authenticate(session, limiter, user.email, PASSWORD, ip="9.9.9.9")


def test_half_sign_in_dies_with_a_password_change(session: Session, services: Services) -> None:
    user = _enrolled(session, services)
    token = two_factor.half_sign_in_token(services.secrets, user)
    user.password_hash = accounts.hasher.hash("a brand new password")
    code = pyotp.TOTP(KNOWN_SECRET).now()
    with pytest.raises(TokenInvalid):
        two_factor.complete_sign_in(
            session, services.secrets, LoginLimiter(), token, code, ip="9.9.9.9"
        )
    with pytest.raises(TokenInvalid):
        two_factor.complete_sign_in(
            session, services.secrets, LoginLimiter(), token[:-2] + "xx", code, ip="9.9.9.9"
        )


def test_half_sign_in_expires_after_five_minutes(session: Session, services: Services) -> None:
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    user = _enrolled(session, services)

    class SixMinutesAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - two_factor.HALF_SIGN_IN_MAX_AGE_S - 60

    # Signed as `half_sign_in_token` signs, with a clock six minutes slow.
    key = services.secrets.derive("account:half-sign-in").hex()
    stale = URLSafeTimedSerializer(key, salt="two-factor", signer=SixMinutesAgo).dumps(
        {"u": user.id, "p": accounts.password_marker(user)}
    )
    code = pyotp.TOTP(KNOWN_SECRET).now()
    with pytest.raises(TokenExpired):
        two_factor.complete_sign_in(
            session, services.secrets, LoginLimiter(), stale, code, ip="9.9.9.9"
        )
    assert two_factor.HALF_SIGN_IN_MAX_AGE_S == 5 * 60


def test_operator_enrolment_is_on_at_once_and_its_first_code_works(
    session: Session, services: Services
) -> None:
    user = make_user(session, "demo-admin@lab.example", role="admin", two_factor=False)
    enrolment, codes = two_factor.enrol_directly(
        session, services.secrets, user, actor="demo", base_url=""
    )
    assert user.two_factor_enabled and len(codes) == 10
    assert enrolment.uri.startswith("otpauth://totp/ringfence:demo-admin@lab.example?secret=")
    # No code was spent to enrol, so the person's first code from the app is not a replay.
    code = pyotp.TOTP(enrolment.secret).now()
    assert two_factor.verify(session, services.secrets, user, code, ip=None) == "totp"
    [payload] = session.scalars(
        select(AuditEvent.payload).where(AuditEvent.tag == EventTag.Account.TwoFactorEnabled)
    )
    assert payload == {"via": "operator"}

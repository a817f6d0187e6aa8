"""Two-factor sign-in: TOTP (RFC 6238) authenticator codes and one-time recovery codes.

The TOTP secret is sealed with AES-GCM under the server's "accounts:totp" key, bound to the
user's id, and shown only while enrolling. A code is accepted for the step before, the step
of and the step after now (30 s each, for clock drift), and never for a step at or before
the last one accepted, so an overheard code cannot be replayed. Recovery codes are 64
random bits each, shown once and stored as sha256 (no slow hash is needed for random values
this long: there is no dictionary to try).

Public interface for the security layer:

    from ringfence.accounts.two_factor import REQUIRED_ROLES, must_enrol

    if must_enrol(user): ...  # an admin or reviewer without two-factor: send to /account/two-factor
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as pysecrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ringfence.accounts.models import RecoveryCode, User, WebSession
from ringfence.accounts.ratelimit import LoginLimiter
from ringfence.accounts.services import password_marker
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.errors import (
    AuthenticationRequired,
    Conflict,
    IntegrityError,
    InvalidInput,
    TokenExpired,
    TokenInvalid,
)
from ringfence.mail import messages
from ringfence.mail import services as mail
from ringfence.secrets import SecretStore

#: roles whose holders must sign in with a second factor
REQUIRED_ROLES = ("admin", "reviewer")
ISSUER = "ringfence"
RECOVERY_CODE_COUNT = 10
#: how long a half sign-in (right password, no code yet) may wait for its code
HALF_SIGN_IN_MAX_AGE_S = 300
_TOTP_DIGITS = re.compile(r"^[0-9]{6}$")
_RECOVERY = re.compile(r"^[0-9a-f]{16}$")
_WRONG_CODE = "invalid code"
_WRONG_CODE_HINT = "enter the 6-digit code your authenticator shows now, or an unused recovery code"


@dataclass(frozen=True)
class Enrolment:
    """A secret to add to an authenticator app, as text and as an otpauth:// URI."""

    secret: str
    uri: str


def must_enrol(user: User) -> bool:
    """Whether the user's role needs two-factor sign-in and they have not enabled it."""
    return user.role in REQUIRED_ROLES and not user.two_factor_enabled


def provisioning_uri(email: str, secret: str) -> str:
    """The otpauth:// URI authenticator apps read: otpauth://totp/ringfence:EMAIL?secret=..."""
    return f"otpauth://totp/{ISSUER}:{quote(email, safe='@')}?secret={secret}&issuer={ISSUER}"


def _aead(secrets: SecretStore) -> AESGCM:
    return AESGCM(secrets.derive("accounts:totp"))


def seal_secret(secrets: SecretStore, user_id: int, secret: str) -> str:
    """The TOTP secret encrypted for storage, bound to its user (a row copied elsewhere fails)."""
    nonce = pysecrets.token_bytes(12)
    sealed = _aead(secrets).encrypt(nonce, secret.encode(), f"user:{user_id}".encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def _unseal(secrets: SecretStore, user: User) -> str:
    if user.totp_secret_sealed is None:
        raise Conflict("two-factor sign-in is not set up for this account")
    raw = base64.urlsafe_b64decode(user.totp_secret_sealed.encode())
    try:
        return _aead(secrets).decrypt(raw[:12], raw[12:], f"user:{user.id}".encode()).decode()
    except InvalidTag as exc:
        raise IntegrityError(
            f"the two-factor secret of {user.email} does not open with this server's key",
            hint=f"reset it with `ringfence users two-factor-reset {user.email}`",
        ) from exc


def _normalise(code: str) -> str:
    # People paste codes with spaces or dashes ("123 456", "abcd-ef01-..."); neither matters.
    return re.sub(r"[\s-]", "", code).lower()[:64]


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    # valid_window=1: the neighbouring steps too, compared in constant time
    for candidate in (step - 1, step, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def _subject(user: User) -> str:
    return f"user:{user.email}"


def _fail(session: Session, user: User, kind: str, reason: str, ip: str | None) -> NoReturn:
    record(
        session,
        EventTag.Account.TwoFactorFailed,
        actor=user.email,
        subject=_subject(user),
        ip=ip,
        payload={"kind": kind, "reason": reason},
    )
    raise AuthenticationRequired(_WRONG_CODE, hint=_WRONG_CODE_HINT)


def _new_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [pysecrets.token_hex(8) for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash_code(c)) for c in codes)
    session.flush()
    return codes


def unused_recovery_codes(session: Session, user: User) -> int:
    """How many of the user's recovery codes are still unused."""
    rows = session.scalars(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
        )
    )
    return len(list(rows))


def pending_enrolment(secrets: SecretStore, user: User) -> Enrolment | None:
    """The secret being set up, while enrolment is unconfirmed (never once it is on)."""
    if user.two_factor_enabled or user.totp_secret_sealed is None:
        return None
    secret = _unseal(secrets, user)
    return Enrolment(secret, provisioning_uri(user.email, secret))


def begin_enrolment(session: Session, secrets: SecretStore, user: User) -> Enrolment:
    """A fresh secret for the user to add to an authenticator; in force once confirmed."""
    if user.two_factor_enabled:
        raise Conflict(
            "two-factor sign-in is already on", hint="turn it off first to move to a new device"
        )
    secret = pyotp.random_base32()
    user.totp_secret_sealed = seal_secret(secrets, user.id, secret)
    user.totp_last_step = None
    session.flush()
    return Enrolment(secret, provisioning_uri(user.email, secret))


def _enabled(
    session: Session, user: User, *, actor: str, ip: str | None, via: str, base_url: str
) -> list[str]:
    user.two_factor_enabled_at = utcnow()
    codes = _new_recovery_codes(session, user)
    record(
        session,
        EventTag.Account.TwoFactorEnabled,
        actor=actor,
        subject=_subject(user),
        ip=ip,
        payload={"via": via},
    )
    mail.queue(session, user.email, messages.two_factor_on(base_url=base_url))
    return codes


def confirm_enrolment(
    session: Session,
    secrets: SecretStore,
    user: User,
    code: str,
    *,
    ip: str | None,
    base_url: str,
    now: datetime | None = None,
) -> list[str]:
    """Turn two-factor on once a code proves the authenticator has the secret; recovery codes."""
    if user.two_factor_enabled:
        raise Conflict("two-factor sign-in is already on")
    if user.totp_secret_sealed is None:
        raise Conflict("start setting up two-factor sign-in first")
    cleaned = _normalise(code)
    step = _matching_step(_unseal(secrets, user), cleaned, now or utcnow())
    if not _TOTP_DIGITS.match(cleaned) or step is None:
        raise InvalidInput(
            "code: that is not the code your authenticator shows",
            hint="check the app's clock, and that you added the secret shown on this page",
        )
    user.totp_last_step = step
    return _enabled(session, user, actor=user.email, ip=ip, via="web", base_url=base_url)


def enrol_directly(
    session: Session,
    secrets: SecretStore,
    user: User,
    *,
    actor: str,
    base_url: str,
    secret: str | None = None,
) -> tuple[Enrolment, list[str]]:
    """Turn two-factor on with a server-chosen secret shown to an operator (the demo's admin)."""
    if user.two_factor_enabled:
        raise Conflict("two-factor sign-in is already on")
    chosen = secret or pyotp.random_base32()
    user.totp_secret_sealed = seal_secret(secrets, user.id, chosen)
    user.totp_last_step = None
    codes = _enabled(session, user, actor=actor, ip=None, via="operator", base_url=base_url)
    return Enrolment(chosen, provisioning_uri(user.email, chosen)), codes


def _accept_totp(session: Session, user: User, step: int) -> bool:
    # A conditional UPDATE, so two requests racing with one code cannot both win.
    result = session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def _spend_recovery_code(session: Session, user: User, code: str) -> bool:
    result = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def verify(
    session: Session,
    secrets: SecretStore,
    user: User,
    code: str,
    *,
    ip: str | None,
    now: datetime | None = None,
) -> str:
    """Check a second factor: "totp" or "recovery_code" when right; AuthenticationRequired if not.

    A failure is recorded in the session (commit it); a recovery code is spent, recorded and
    mailed to the account.
    """
    if not user.two_factor_enabled:
        raise Conflict("two-factor sign-in is not on for this account")
    cleaned = _normalise(code)
    if _TOTP_DIGITS.match(cleaned):
        step = _matching_step(_unseal(secrets, user), cleaned, now or utcnow())
        if step is None:
            _fail(session, user, "totp", "wrong", ip)
        elif not _accept_totp(session, user, step):
            _fail(session, user, "totp", "replayed", ip)
        return "totp"
    if not _RECOVERY.match(cleaned) or not _spend_recovery_code(session, user, cleaned):
        _fail(session, user, "recovery_code", "wrong or used", ip)
    left = unused_recovery_codes(session, user)
    record(
        session,
        EventTag.Account.RecoveryCodeUsed,
        actor=user.email,
        subject=_subject(user),
        ip=ip,
        payload={"left": left},
    )
    mail.queue(session, user.email, messages.recovery_code_used(left=left))
    return "recovery_code"


def _verify_limited(
    session: Session,
    secrets: SecretStore,
    limiter: LoginLimiter,
    user: User,
    code: str,
    *,
    ip: str | None,
    now: datetime | None,
) -> str:
    # Wrong codes count against the same limits as wrong passwords, so neither a stolen
    # password nor a stolen session buys unlimited guesses at six digits.
    client = ip or "unknown"
    limiter.check(session, client, user.email)
    try:
        kind = verify(session, secrets, user, code, ip=ip, now=now)
    except AuthenticationRequired:
        limiter.failed(session, client, user.email)
        raise
    limiter.succeeded(session, client, user.email)
    return kind


def _turned_off(session: Session, user: User) -> None:
    user.totp_secret_sealed = None
    user.two_factor_enabled_at = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(
    session: Session,
    secrets: SecretStore,
    limiter: LoginLimiter,
    user: User,
    code: str,
    *,
    ip: str | None,
    now: datetime | None = None,
) -> None:
    """Turn two-factor off; needs a current or recovery code (a stolen session is not enough)."""
    _verify_limited(session, secrets, limiter, user, code, ip=ip, now=now)
    _turned_off(session, user)
    record(
        session, EventTag.Account.TwoFactorDisabled, actor=user.email, subject=_subject(user), ip=ip
    )
    mail.queue(session, user.email, messages.two_factor_off())


def reset(session: Session, user: User, *, reason: str, actor: str) -> None:
    """An administrator turns two-factor off for someone who lost their device; signs them out."""
    cleaned = reason.strip()
    if not cleaned:
        raise InvalidInput("reason: say why (e.g. how you confirmed who asked)")
    if not user.two_factor_enabled:
        raise Conflict(f"two-factor sign-in is not on for {user.email}")
    _turned_off(session, user)
    # Sessions opened with the lost device end too: it may be in someone else's hands.
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    record(
        session,
        EventTag.Account.TwoFactorReset,
        actor=actor,
        subject=_subject(user),
        payload={"reason": cleaned[:500]},
    )
    mail.queue(session, user.email, messages.two_factor_reset(reason=cleaned[:500]))


def regenerate_recovery_codes(
    session: Session,
    secrets: SecretStore,
    limiter: LoginLimiter,
    user: User,
    code: str,
    *,
    ip: str | None,
    now: datetime | None = None,
) -> list[str]:
    """Ten new recovery codes (the old ones stop working); needs a current code."""
    _verify_limited(session, secrets, limiter, user, code, ip=ip, now=now)
    codes = _new_recovery_codes(session, user)
    record(
        session,
        EventTag.Account.RecoveryCodesRegenerated,
        actor=user.email,
        subject=_subject(user),
        ip=ip,
    )
    mail.queue(session, user.email, messages.recovery_codes_renewed())
    return codes


def _half_serializer(secrets: SecretStore) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secrets.derive("account:half-sign-in").hex(), salt="two-factor")


def half_sign_in_token(secrets: SecretStore, user: User) -> str:
    """A signed token saying "this password was right"; worth nothing without a second factor.

    It expires after five minutes and dies at once when the password changes.
    """
    payload: dict[str, Any] = {"u": user.id, "p": password_marker(user)}
    return str(_half_serializer(secrets).dumps(payload))


def _half_signed_in(session: Session, secrets: SecretStore, token: str) -> User:
    try:
        payload = _half_serializer(secrets).loads(token, max_age=HALF_SIGN_IN_MAX_AGE_S)
    except SignatureExpired as exc:
        raise TokenExpired("your sign-in took too long", hint="sign in again") from exc
    except BadSignature as exc:
        raise TokenInvalid("this sign-in is not valid", hint="sign in again") from exc
    user = session.get(User, payload.get("u")) if isinstance(payload, dict) else None
    if (
        user is None
        or not user.is_active
        or not user.two_factor_enabled
        or payload.get("p") != password_marker(user)
    ):
        raise TokenInvalid("this sign-in is not valid", hint="sign in again")
    return user


def complete_sign_in(
    session: Session,
    secrets: SecretStore,
    limiter: LoginLimiter,
    token: str,
    code: str,
    *,
    ip: str,
    now: datetime | None = None,
) -> User:
    """The user a half sign-in belongs to, once the second factor is right (then: a session)."""
    user = _half_signed_in(session, secrets, token)
    kind = _verify_limited(session, secrets, limiter, user, code, ip=ip, now=now)
    user.last_login_at = utcnow()
    record(
        session,
        EventTag.Account.LoginSucceeded,
        actor=user.email,
        subject=_subject(user),
        ip=ip,
        payload={"second_factor": kind},
    )
    return user

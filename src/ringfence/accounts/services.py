"""Accounts: sign-up, email verification, passwords, sign-in, browser sessions.

Messages never reveal whether an address has an account: sign-up always answers "check your
mail" (an existing owner gets a "someone tried to sign up" mail instead), a reset request
always answers the same, and sign-in failures all read "invalid email or password".
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ringfence.accounts import ratelimit, tokens
from ringfence.accounts.models import ROLES, User, WebSession
from ringfence.accounts.ratelimit import LoginLimiter
from ringfence.accounts.sessions import end_session as end_session
from ringfence.accounts.sessions import start_session as start_session
from ringfence.accounts.sessions import user_from_session as user_from_session
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    RateLimited,
    TokenExpired,
    TokenInvalid,
)
from ringfence.mail import messages
from ringfence.mail import services as mail
from ringfence.secrets import SecretStore

if TYPE_CHECKING:
    from ringfence.organisations.models import Institution

# One address, one @, a dotted domain: strict enough to catch typos, loose enough for real mail.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
#: the lowest zxcvbn score (0-4) a new password may have: 2 is "somewhat guessable"
MIN_STRENGTH = 2
#: account mails (sign-up, verification, reset) per address and per IP in MAIL_WINDOW
MAIL_PER_ADDRESS = 5
MAIL_PER_IP = 20
MAIL_WINDOW = timedelta(hours=1)
VERIFY_MAX_AGE_S = 3 * 24 * 3600
RESET_MAX_AGE_S = 24 * 3600

#: argon2id with the library's defaults (RFC 9106's second recommended profile)
hasher = PasswordHasher()
# Compared against when the address is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = hasher.hash("ringfence-dummy-password")


def normalise_email(email: str) -> str:
    """The address lowercased and checked, or InvalidInput saying what is wrong."""
    cleaned = email.strip().lower()
    if not cleaned:
        raise InvalidInput("email: enter your email address")
    if len(cleaned) > 320 or not EMAIL.match(cleaned):
        raise InvalidInput(f"email: {email.strip()[:80]!r} is not an email address")
    return cleaned


def email_domain(email: str) -> str:
    """The domain part of an (already normalised) address."""
    return email.rpartition("@")[2]


def check_password(password: str, *, email: str = "") -> None:
    """InvalidInput unless the password is long enough and not easy to guess.

    Refused: fewer than MIN_PASSWORD characters; one of the 30,000 most common passwords
    (the list zxcvbn ships, so the check runs offline); anything zxcvbn scores below
    MIN_STRENGTH of 4, such as repeats, sequences, keyboard walks or the address itself.
    """
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password: use at most {MAX_PASSWORD} characters")
    if email and email.lower() in password.lower():
        raise InvalidInput("password: do not use your email address in it")
    if password.lower() in _common_passwords():
        raise InvalidInput(
            "password: this is one of the most common passwords",
            hint="choose a longer phrase of unrelated words",
        )
    from zxcvbn import zxcvbn

    # zxcvbn refuses inputs over 72 characters; their first 72 are what an attacker guesses.
    words = [w for w in re.split(r"[@.+_-]", email.lower()) if len(w) > 2] + ["ringfence"]
    verdict = zxcvbn(password[:72], user_inputs=words)
    if verdict["score"] < MIN_STRENGTH:
        warning = verdict["feedback"].get("warning") or "it is easy to guess"
        raise InvalidInput(
            f"password: {warning.rstrip('.').lower()}",
            hint="choose a longer phrase of unrelated words",
        )


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_role(role: str) -> str:
    """The role if it is one ringfence knows."""
    if role not in ROLES:
        raise InvalidInput(f"role: {role!r} is not a role", hint=f"use one of {', '.join(ROLES)}")
    return role


def _serializer(secrets: SecretStore, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secrets.derive("account:mail-link").hex(), salt=purpose)


def _password_marker(user: User) -> str:
    # Binds a reset link to the current password: once used (or the password changes) it is dead.
    return hashlib.sha256((user.password_hash or "unset").encode()).hexdigest()[:16]


def password_marker(user: User) -> str:
    """A short digest of the password hash: a token carrying it dies when the password changes."""
    return _password_marker(user)


def mail_link_token(secrets: SecretStore, purpose: str, user: User) -> str:
    """A signed, expiring token for a link in a mail ("verify-email" or "set-password")."""
    payload: dict[str, Any] = {"u": user.id, "e": user.email}
    if purpose == "set-password":
        payload["p"] = _password_marker(user)
    return str(_serializer(secrets, purpose).dumps(payload))


def _read_link(session: Session, secrets: SecretStore, purpose: str, token: str) -> User:
    max_age = VERIFY_MAX_AGE_S if purpose == "verify-email" else RESET_MAX_AGE_S
    try:
        payload = _serializer(secrets, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenExpired("this link has expired", hint="ask for a new one") from exc
    except BadSignature as exc:
        raise TokenInvalid(
            "this link is not valid", hint="copy the whole link from the mail"
        ) from exc
    user = session.get(User, payload.get("u")) if isinstance(payload, dict) else None
    if user is None or user.email != payload.get("e") or not user.is_active:
        raise TokenInvalid("this link is not valid", hint="ask for a new one")
    if purpose == "set-password" and payload.get("p") != _password_marker(user):
        raise TokenExpired("this link was already used", hint="ask for a new one")
    return user


# Organisations build on accounts (their members are users), so accounts reach them late.


def _institution(session: Session, name: str) -> Institution:
    from ringfence.organisations.services import get_institution

    return get_institution(session, name)


def _institution_for_domain(session: Session, email: str) -> Institution | None:
    from ringfence.organisations.services import institution_for_domain

    return institution_for_domain(session, email)


def get_user(session: Session, email: str) -> User:
    """The user with this address, or NotFound."""
    user = session.scalars(select(User).where(User.email == normalise_email(email))).first()
    if user is None:
        raise NotFound(f"no user {email!r}", hint="add one with `ringfence users add EMAIL`")
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by address."""
    return list(session.scalars(select(User).order_by(User.email)))


def add_user(
    session: Session,
    secrets: SecretStore,
    email: str,
    *,
    role: str = "member",
    institution: str | None = None,
    name: str = "",
    actor: str,
    base_url: str,
) -> User:
    """An admin adds a person: verified by the admin's word, invited to set a password by mail."""
    address = normalise_email(email)
    check_role(role)
    if session.scalars(select(User).where(User.email == address)).first() is not None:
        raise Conflict(
            f"user {address} already exists", hint="change it with `ringfence users set`"
        )
    inst = _institution(session, institution) if institution else None
    user = User(
        email=address,
        name=name.strip()[:200],
        role=role,
        institution=inst,
        email_verified_at=utcnow(),
    )
    session.add(user)
    session.flush()
    record(
        session,
        EventTag.Account.UserAdded,
        actor=actor,
        subject=f"user:{address}",
        payload={"role": role, "institution": inst.name if inst else None},
    )
    link = f"{base_url}/password/set?token={mail_link_token(secrets, 'set-password', user)}"
    mail.queue(session, address, messages.account_created(address=address, link=link))
    return user


def _may_mail(session: Session, address: str, ip: str | None) -> bool:
    """Count an account mail to `address` asked from `ip`.

    Too many from one IP is refused out loud (it says nothing about any address); too many
    to one address is dropped in silence, so the answer never tells whether it has an account.
    """
    if ip and not ratelimit.hit(session, f"mail:ip:{ip}", limit=MAIL_PER_IP, window=MAIL_WINDOW):
        raise RateLimited(
            "too many account mails were asked from your network address",
            hint="wait an hour and try again",
        )
    return ratelimit.hit(session, f"mail:to:{address}", limit=MAIL_PER_ADDRESS, window=MAIL_WINDOW)


def sign_up(
    session: Session,
    secrets: SecretStore,
    email: str,
    password: str,
    *,
    name: str = "",
    ip: str | None,
    base_url: str,
) -> None:
    """Create an unverified member and mail a verification link; an existing address gets a notice.

    The answer is the same either way, so sign-up cannot tell anyone who has an account.
    """
    address = normalise_email(email)
    check_password(password, email=address)
    if len(name) > 200:
        raise InvalidInput("name: use at most 200 characters")
    existing = session.scalars(select(User).where(User.email == address)).first()
    # Hashed either way: a known address must cost as long as a new one (no timing oracle).
    password_hash = hasher.hash(password)
    may_mail = _may_mail(session, address, ip)
    if existing is not None:
        record(
            session,
            EventTag.Account.SignUpRepeated,
            actor=address,
            subject=f"user:{address}",
            ip=ip,
        )
        if not may_mail:
            return
        mail.queue(session, address, messages.sign_up_repeated(base_url=base_url))
        return
    user = User(email=address, name=name.strip(), role="member", password_hash=password_hash)
    session.add(user)
    session.flush()
    record(session, EventTag.Account.UserSignedUp, actor=address, subject=f"user:{address}", ip=ip)
    if not may_mail:
        return
    link = f"{base_url}/verify?token={mail_link_token(secrets, 'verify-email', user)}"
    mail.queue(session, address, messages.verify_email(address=address, link=link))


def verify_email(session: Session, secrets: SecretStore, token: str, *, ip: str | None) -> User:
    """Mark the address verified; a verified institution domain makes the user its member."""
    user = _read_link(session, secrets, "verify-email", token)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        if user.institution_id is None:
            user.institution = _institution_for_domain(session, user.email)
        record(
            session,
            EventTag.Account.EmailVerified,
            actor=user.email,
            subject=f"user:{user.email}",
            ip=ip,
            payload={"institution": user.institution.name if user.institution else None},
        )
    return user


def request_password_reset(
    session: Session, secrets: SecretStore, email: str, *, ip: str | None, base_url: str
) -> None:
    """Mail a set-password link when the address has an account; answer the same when not."""
    address = normalise_email(email)
    user = session.scalars(select(User).where(User.email == address)).first()
    if user is None or not user.is_active:
        if ip and not ratelimit.hit(
            session, f"mail:ip:{ip}", limit=MAIL_PER_IP, window=MAIL_WINDOW
        ):
            raise RateLimited(
                "too many account mails were asked from your network address",
                hint="wait an hour and try again",
            )
        return
    record(
        session,
        EventTag.Account.PasswordResetRequested,
        actor=address,
        subject=f"user:{address}",
        ip=ip,
    )
    if not _may_mail(session, address, ip):
        return
    link = f"{base_url}/password/set?token={mail_link_token(secrets, 'set-password', user)}"
    mail.queue(session, address, messages.password_reset(link=link))


def set_password(
    session: Session, secrets: SecretStore, token: str, password: str, *, ip: str | None
) -> User:
    """Set the password from a mailed link (which also proves the address); signs out others."""
    user = _read_link(session, secrets, "set-password", token)
    check_password(password, email=user.email)
    user.password_hash = hasher.hash(password)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    ended = end_credentials(session, user, reason="password set", actor=user.email)
    record(
        session,
        EventTag.Account.PasswordSet,
        actor=user.email,
        subject=f"user:{user.email}",
        ip=ip,
        payload=ended,
    )
    return user


def set_password_by_operator(session: Session, user: User, password: str, *, actor: str) -> User:
    """An operator (the demo set-up, an admin at the console) sets this password.

    The same policy as a person's own choice; whatever acted in the account's name before
    (sessions, tokens, links) ends, and the change is audited and mailed to the owner.
    """
    check_password(password, email=user.email)
    user.password_hash = hasher.hash(password)
    ended = end_credentials(session, user, reason="password set by an operator", actor=actor)
    record(
        session,
        EventTag.Account.PasswordSet,
        actor=actor,
        subject=f"user:{user.email}",
        payload={"by_operator": True, **ended},
    )
    mail.queue(session, user.email, messages.password_set_by_operator(address=user.email))
    return user


def end_credentials(session: Session, user: User, *, reason: str, actor: str) -> dict[str, int]:
    """End every session, API token and download link of `user`; how many of each.

    Whoever held the account before (a thief, or someone who signed up with this address
    before its owner proved it) keeps nothing that acts in the owner's name.
    """
    from ringfence.distribution import links  # distribution builds on access, not back

    sessions = session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return {
        "sessions_ended": int(sessions.rowcount or 0),  # type: ignore[attr-defined]
        "tokens_revoked": tokens.revoke_all(session, user, reason=reason, actor=actor),
        "links_revoked": links.revoke_all(session, user.id, reason=reason, actor=actor),
    }


def authenticate(
    session: Session, limiter: LoginLimiter, email: str, password: str, *, ip: str
) -> User:
    """The user whose address and password these are; one message for every failure.

    For a user with two-factor sign-in this is only the first half: check `two_factor_enabled`
    and finish with `two_factor.complete_sign_in` before starting a session.
    """
    address = email.strip().lower()
    try:
        limiter.check(session, ip, address)
    except RateLimited:
        record(
            session,
            EventTag.Account.LoginRateLimited,
            actor=address[:320] or "anonymous",
            subject=f"user:{address[:300]}",
            ip=ip,
        )
        raise
    user = session.scalars(select(User).where(User.email == address)).first() if address else None
    ok = False
    try:
        hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        ok = user is not None and user.password_hash is not None and user.is_active
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        limiter.failed(session, ip, address)
        record(
            session,
            EventTag.Account.LoginFailed,
            actor=address[:320] or "anonymous",
            subject=f"user:{address[:300]}",
            ip=ip,
        )
        raise AuthenticationRequired(
            "invalid email or password", hint="check both, or reset your password"
        )
    if user.password_hash and hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    if user.two_factor_enabled:
        # Half-way: the failures stay counted and success is recorded only once the second
        # factor is right (`two_factor.complete_sign_in`), or a known password would reset
        # the count and buy endless guesses at six digits.
        return user
    limiter.succeeded(session, ip, address)
    user.last_login_at = utcnow()
    record(
        session,
        EventTag.Account.LoginSucceeded,
        actor=user.email,
        subject=f"user:{user.email}",
        ip=ip,
    )
    return user


def update_user(
    session: Session,
    email: str,
    *,
    role: str | None = None,
    institution: str | None = None,
    active: bool | None = None,
    actor: str,
) -> User:
    """Change a user's role, institution ("" clears it) or whether the account is active.

    An admin never changes their own role nor disables themselves (`actor` is their address):
    the lab would be left without the admin who could undo it.
    """
    user = get_user(session, email)
    if actor == user.email and (
        (role is not None and role != user.role) or (active is not None and not active)
    ):
        raise InvalidInput(
            "you cannot change your own role or disable yourself", hint="ask another admin"
        )
    changes: dict[str, Any] = {}
    if role is not None and role != user.role:
        check_role(role)
        changes["role"] = [user.role, role]
        user.role = role
    if institution is not None:
        inst = _institution(session, institution) if institution else None
        old = user.institution.name if user.institution else None
        if (inst.name if inst else None) != old:
            changes["institution"] = [old, inst.name if inst else None]
            user.institution = inst
    if active is not None and active != user.is_active:
        changes["active"] = [user.is_active, active]
        user.is_active = active
        if not active:
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    if changes:
        tag = (
            EventTag.Account.RoleChanged
            if set(changes) == {"role"}
            else EventTag.Account.UserUpdated
        )
        if changes.get("active") == [True, False]:
            tag = EventTag.Account.UserDisabled
        record(session, tag, actor=actor, subject=f"user:{user.email}", payload=changes)
    return user

"""API tokens: random bearer secrets, shown once, stored as sha256, each with one scope.

Tokens carry 256 bits of randomness, so a fast hash is enough to store them (a slow password
hash protects guessable secrets, not random ones) and lets one indexed lookup find the row.
"""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from ringfence.accounts.models import SCOPES, APIToken, User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied

PREFIX = "rf_"


def scope_allows(granted: str, needed: str) -> bool:
    """Whether a token of scope `granted` may be used for `needed` (admin > download > read)."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def check_scope(scope: str) -> str:
    """The scope if it is one ringfence knows."""
    if scope not in SCOPES:
        raise InvalidInput(
            f"scope: {scope!r} is not a scope", hint=f"use one of {', '.join(SCOPES)}"
        )
    return scope


@dataclass(frozen=True)
class NewToken:
    """A token just created: `raw` is shown once and never stored."""

    token: APIToken
    raw: str


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    session: Session,
    user: User,
    scope: str,
    *,
    name: str = "",
    expires_at: datetime | None = None,
    actor: str,
) -> NewToken:
    """A new token for `user`; the admin scope (lab decisions through the API) needs a reviewer.

    A token never adds rights: an admin-scope token acts with its holder's role.
    """
    check_scope(scope)
    if not user.email_verified:
        raise PermissionDenied(
            f"verify your address {user.email} before creating API tokens",
            hint="open the link we mailed you, or ask for a new one with a password reset",
        )
    if scope == "admin" and user.role not in ("admin", "reviewer"):
        raise PermissionDenied(
            f"{user.email} is neither an admin nor a reviewer",
            hint="admin tokens are for the lab's admins and reviewers",
        )
    if len(name) > 100:
        raise InvalidInput("name: use at most 100 characters")
    raw = PREFIX + pysecrets.token_urlsafe(32)
    token = APIToken(
        user_id=user.id,
        name=name.strip(),
        prefix=raw[:10],
        token_hash=_digest(raw),
        scope=scope,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    record(
        session,
        EventTag.Account.APITokenAdded,
        actor=actor,
        subject=f"user:{user.email}",
        payload={"token_id": token.id, "prefix": token.prefix, "scope": scope, "name": token.name},
    )
    return NewToken(token, raw)


def list_tokens(session: Session, user: User) -> list[APIToken]:
    """A user's tokens, newest first (revoked ones included)."""
    return list(
        session.scalars(
            select(APIToken).where(APIToken.user_id == user.id).order_by(APIToken.id.desc())
        )
    )


def revoke_token(session: Session, user: User, token_id: int, *, actor: str) -> APIToken:
    """Revoke one of `user`'s tokens (no-op if already revoked)."""
    token = session.get(APIToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(f"no token {token_id} for {user.email}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(
            session,
            EventTag.Account.APITokenRevoked,
            actor=actor,
            subject=f"user:{user.email}",
            payload={"token_id": token.id, "prefix": token.prefix},
        )
    return token


def user_from_token(session: Session, raw_token: str) -> APIToken:
    """The live token a raw bearer secret names (its `user` and `scope` say who and how far).

    Public interface. Raises AuthenticationRequired for an unknown, revoked or expired token
    or a disabled account. Whether the scope covers a route is the web layer's rule
    (`ringfence.web.security.RULES`).
    """
    if not raw_token.startswith(PREFIX) or len(raw_token) > 128:
        raise AuthenticationRequired("the API token is not valid", hint="create a new one")
    # The holder in the same round trip: every API request asks this first.
    token = session.scalars(
        select(APIToken)
        .where(APIToken.token_hash == _digest(raw_token))
        .options(joinedload(APIToken.user))
    ).first()
    now = utcnow()
    if token is None or token.revoked_at is not None:
        raise AuthenticationRequired("the API token is not valid", hint="create a new one")
    if token.expires_at is not None and token.expires_at <= now:
        raise AuthenticationRequired("the API token has expired", hint="create a new one")
    if not token.user.is_active:
        raise AuthenticationRequired("the account of this API token is disabled")
    # Coarse: one write per minute at most, so a busy client does not write on every call.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
    return token


def revoke_all(session: Session, user: User, *, reason: str, actor: str) -> int:
    """Revoke every live token of `user` (a password change, a disabled account); how many."""
    live = [
        t
        for t in session.scalars(
            select(APIToken).where(APIToken.user_id == user.id, APIToken.revoked_at.is_(None))
        )
    ]
    for token in live:
        token.revoked_at = utcnow()
    if live:
        record(
            session,
            EventTag.Account.APITokenRevoked,
            actor=actor,
            subject=f"user:{user.email}",
            payload={"token_ids": [t.id for t in live], "reason": reason},
        )
    return len(live)

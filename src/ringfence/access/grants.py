"""Grants: the right to download a release, how it is given, revoked, expires, and checked."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ringfence import jobs
from ringfence.access.circles import admits, standing
from ringfence.access.licences import has_accepted
from ringfence.access.models import AccessRequest, Grant, InstitutionGrant
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import utcnow
from ringfence.decisions import check_reason
from ringfence.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied
from ringfence.mail import messages
from ringfence.mail import services as mail
from ringfence.organisations.models import Institution

DEFAULT_GRANT_DAYS = 365
MAX_GRANT_DAYS = 5 * 365
#: how a grant's holder gets the release: files, or queries through the inference endpoint
MODES = ("download", "hosted")


def check_mode(mode: str) -> str:
    """An access mode: download or hosted."""
    if mode not in MODES:
        raise InvalidInput(f"mode: give download or hosted (got {mode!r})")
    return mode


def check_days(days: int) -> int:
    """A grant lifetime in days: 1 to 5 years' worth."""
    if not 1 <= days <= MAX_GRANT_DAYS:
        raise InvalidInput(f"days: give between 1 and {MAX_GRANT_DAYS} days (got {days})")
    return days


def authorise_download(session: Session, user: User | None, release: Release) -> Grant:
    """The grant that lets `user` download `release` now, or an error saying why not.

    Public interface for distribution and fingerprinting; call it on every request (it reads
    the current state, so a revocation or narrowing takes effect on the next request).
    Raises AuthenticationRequired without a user; PermissionDenied, with a reason a person
    can act on, when there is no grant, the grant is revoked or expired, the release's circle
    no longer admits the user, or the release's current licence version is not accepted.
    A hosted grant never opens a download: its holder queries the inference endpoint.
    """
    grant = _current_grant(session, user, release, "download")
    if grant.mode != "download":
        raise PermissionDenied(
            f"your access to {release.ref} is hosted: query it through the inference "
            "endpoint (/v1); no file of it is sent",
            hint="ask the lab if you need the weights themselves",
        )
    return grant


def authorise_hosted(session: Session, user: User | None, release: Release) -> Grant:
    """The hosted grant that lets `user` query `release` now, or an error saying why not.

    The same checks as `authorise_download` (state, expiry, circle, licence), read afresh on
    each call, so revocation and narrowing cut inference on the next request or stream check.
    """
    grant = _current_grant(session, user, release, "query")
    if grant.mode != "hosted":
        raise PermissionDenied(
            f"your access to {release.ref} is by download, not through the inference endpoint",
            hint="ask the lab for hosted access",
        )
    return grant


def _current_grant(session: Session, user: User | None, release: Release, verb: str) -> Grant:
    if user is None:
        raise AuthenticationRequired(
            f"sign in to {verb} {release.ref}", hint="use a session or an API token"
        )
    if not user.is_active:
        raise PermissionDenied("this account is disabled", hint="contact the lab's admins")
    if not user.email_verified:
        # Whoever signed up with an address before its owner proved it never downloads as them.
        raise PermissionDenied(
            f"verify your address {user.email} before you {verb} a release",
            hint="open the link we mailed you",
        )
    grant = session.scalars(
        select(Grant).where(Grant.user_id == user.id, Grant.release_id == release.id)
    ).first()
    if grant is None:
        raise PermissionDenied(
            f"you have no access grant for {release.ref}",
            hint="request access on the release page or with `ringfence request`",
        )
    if grant.state == "revoked":
        raise PermissionDenied(
            f"your access to {release.ref} was revoked: {grant.revoked_reason or 'no reason given'}"
        )
    if grant.state == "expired" or grant.expires_at <= utcnow():
        raise PermissionDenied(
            f"your access to {release.ref} expired on {grant.expires_at:%Y-%m-%d}",
            hint="request access again",
        )
    if not admits(session, release, user):
        raise PermissionDenied(
            f"{release.ref} is now limited to the {release.circle} circle, which does not "
            f"include you ({standing(session, user)})"
        )
    if not has_accepted(session, user, release):
        licence = release.licence
        ref = licence.ref if licence else "?"
        raise PermissionDenied(
            f"accept the licence {ref} of {release.ref} before you {verb} it",
            hint=f"accept it on the release page or with `ringfence licence accept {release.ref}`",
        )
    return grant


def issue_grant(
    session: Session,
    user: User,
    release: Release,
    *,
    via: str,
    granted_by: str,
    days: int = DEFAULT_GRANT_DAYS,
    request: AccessRequest | None = None,
    institution_grant: InstitutionGrant | None = None,
    expires_at: datetime | None = None,
    ip: str | None = None,
    mode: str | None = None,
) -> Grant:
    """Give (or renew) `user`'s grant for `release`; one row per person and release.

    `mode` None keeps a renewed grant's mode (a new one downloads).
    """
    now = utcnow()
    until = expires_at or now + timedelta(days=check_days(days))
    grant = session.scalars(
        select(Grant).where(Grant.user_id == user.id, Grant.release_id == release.id)
    ).first()
    renewed = grant is not None
    if grant is None:
        grant = Grant(
            user_id=user.id, release_id=release.id, granted_by=granted_by, expires_at=until
        )
        session.add(grant)
    elif grant.state != "active" or grant.expires_at <= now:
        # A new issuance: links made under the revoked or expired one stay dead for good.
        grant.issuance += 1
    grant.state = "active"
    grant.via = via
    grant.mode = check_mode(mode or grant.mode or "download")
    grant.granted_by = granted_by
    grant.expires_at = until
    grant.revoked_at = None
    grant.revoked_reason = ""
    grant.request_id = request.id if request else grant.request_id
    grant.institution_grant_id = institution_grant.id if institution_grant else None
    if renewed:
        grant.created_at = now
    session.flush()
    # The recipient's manifest is computed by a job, queued with the grant (or not at all).
    jobs.enqueue(
        session,
        "distribution.manifest",
        subject=f"release:{release.id}:user:{user.id}",
        release_id=release.id,
        user_id=user.id,
    )
    record(
        session,
        EventTag.Access.GrantRenewed if renewed else EventTag.Access.GrantAdded,
        actor=granted_by,
        subject=f"release:{release.ref}",
        ip=ip,
        payload={
            "grant_id": grant.id,
            "user": user.email,
            "via": via,
            "expires_at": until.isoformat(),
            "request_id": grant.request_id,
            "mode": grant.mode,
        },
    )
    return grant


def add_grant(
    session: Session,
    release: Release,
    user: User,
    *,
    days: int = DEFAULT_GRANT_DAYS,
    actor: str,
    ip: str | None = None,
    mode: str = "download",
) -> Grant:
    """A direct grant, like the Hub's "add access"; the grantee still accepts the licence."""
    if not admits(session, release, user):
        raise InvalidInput(
            f"{user.email} is outside the {release.circle} circle of {release.ref} "
            f"(their standing is {standing(session, user)})",
            hint="widen the release first, or record their institution's NDA",
        )
    return issue_grant(
        session, user, release, via="direct", granted_by=actor, days=days, ip=ip, mode=mode
    )


def get_grant(session: Session, grant_id: int) -> Grant:
    """A grant by id, or NotFound."""
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}", hint="see `ringfence grants list`")
    return grant


def revoke_grant(
    session: Session, grant: Grant, *, reason: str, actor: str, ip: str | None = None
) -> Grant:
    """Revoke one grant (effective on the next request); its request becomes revoked too."""
    reason = check_reason(reason, required=True)
    if grant.state != "active":
        return grant
    now = utcnow()
    grant.state = "revoked"
    grant.revoked_at = now
    grant.revoked_reason = reason
    if grant.request_id is not None:
        req = session.get(AccessRequest, grant.request_id)
        if req is not None:
            req.state, req.reason, req.decided_by, req.decided_at = "revoked", reason, actor, now
    release = session.get(Release, grant.release_id)
    ref = release.ref if release else str(grant.release_id)
    mail.queue(session, grant.user.email, messages.access_revoked(release=ref, reason=reason))
    record(
        session,
        EventTag.Access.GrantRevoked,
        actor=actor,
        subject=f"release:{ref}",
        ip=ip,
        payload={"grant_id": grant.id, "user": grant.user.email, "reason": reason},
    )
    return grant


def list_grants(
    session: Session,
    *,
    release: Release | None = None,
    user: User | None = None,
    state: str | None = None,
    limit: int = 1000,
) -> list[Grant]:
    """Grants, newest first, filtered by release, user and state."""
    query = select(Grant).options(selectinload(Grant.user)).order_by(Grant.id.desc()).limit(limit)
    if release is not None:
        query = query.where(Grant.release_id == release.id)
    if user is not None:
        query = query.where(Grant.user_id == user.id)
    if state:
        query = query.where(Grant.state == state)
    return list(session.scalars(query))


def grant_record(grant: Grant) -> dict[str, Any]:
    """A grant as one flat record (the API and the CLI show the same fields)."""
    return {
        "id": grant.id,
        "release": grant.release.ref,
        "user": grant.user.email,
        "state": grant.state,
        "via": grant.via,
        "mode": grant.mode,
        "expires_at": grant.expires_at.isoformat(timespec="seconds"),
        "revoked_reason": grant.revoked_reason,
    }


def add_institution_grant(
    session: Session,
    institution: Institution,
    release: Release,
    *,
    seats: int,
    days: int = DEFAULT_GRANT_DAYS,
    actor: str,
) -> InstitutionGrant:
    """Access for up to `seats` members of an institution; members claim seats by requesting."""
    if not 1 <= seats <= 100_000:
        raise InvalidInput(f"seats: give between 1 and 100000 (got {seats})")
    now = utcnow()
    org_grant = session.scalars(
        select(InstitutionGrant).where(
            InstitutionGrant.institution_id == institution.id,
            InstitutionGrant.release_id == release.id,
        )
    ).first()
    if org_grant is None:
        org_grant = InstitutionGrant(
            institution_id=institution.id,
            release_id=release.id,
            seats=seats,
            expires_at=now + timedelta(days=check_days(days)),
        )
        session.add(org_grant)
    org_grant.seats = seats
    org_grant.state = "active"
    org_grant.revoked_reason = ""
    org_grant.expires_at = now + timedelta(days=check_days(days))
    session.flush()
    record(
        session,
        EventTag.Access.InstitutionGrantAdded,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={"institution": institution.name, "seats": seats, "id": org_grant.id},
    )
    return org_grant


def seats_used(session: Session, org_grant: InstitutionGrant) -> int:
    """Active personal grants that hold one of the institution grant's seats."""
    return (
        session.scalar(
            select(func.count(Grant.id)).where(
                Grant.institution_grant_id == org_grant.id, Grant.state == "active"
            )
        )
        or 0
    )


def open_institution_grant(
    session: Session, user: User, release: Release
) -> InstitutionGrant | None:
    """The user's institution grant for the release when it is active and has a free seat."""
    if user.institution_id is None:
        return None
    org_grant = session.scalars(
        select(InstitutionGrant).where(
            InstitutionGrant.institution_id == user.institution_id,
            InstitutionGrant.release_id == release.id,
            InstitutionGrant.state == "active",
        )
    ).first()
    if org_grant is None or org_grant.expires_at <= utcnow():
        return None
    return org_grant if seats_used(session, org_grant) < org_grant.seats else None

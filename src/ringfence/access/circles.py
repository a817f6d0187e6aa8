"""Circles: who a release admits, a person's standing, and narrowing a release.

A person's standing is the narrowest circle they belong to: lab roles are `in-house`, members
of an institution with an active NDA are `partners`, verified people are `research`, anyone
else `public`. A release admits a person when their standing lies inside its circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, literal, or_, select, true, update
from sqlalchemy.orm import Session

from ringfence.access import hooks
from ringfence.access.models import CIRCLES, AccessRequest, Grant, InstitutionGrant
from ringfence.accounts.models import LAB_ROLES, User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.catalogue.services import get_release, parse_ref
from ringfence.db import utcnow
from ringfence.decisions import check_reason
from ringfence.errors import InvalidInput, NotFound
from ringfence.mail import messages
from ringfence.mail import services as mail
from ringfence.organisations import services as organisations
from ringfence.organisations.models import NDA
from ringfence.organisations.services import (
    active_nda_institution_ids,
    active_nda_institutions,
    has_active_nda,
)


def rank(circle: str) -> int:
    """0 for in-house up to 3 for public."""
    return CIRCLES.index(check_circle(circle))


def check_circle(circle: str) -> str:
    """The circle if it is one ringfence knows."""
    if circle not in CIRCLES:
        raise InvalidInput(
            f"circle: {circle!r} is not a circle", hint=f"use one of {', '.join(CIRCLES)}"
        )
    return circle


def admitted(circle: str, now: datetime) -> ColumnElement[bool]:
    """SQL condition on `User` for the people a release in `circle` admits."""
    lab = User.role.in_(LAB_ROLES)
    match check_circle(circle):
        case "in-house":
            return lab
        case "partners":
            return or_(lab, active_nda_institutions(now))
        case "research":
            return or_(lab, active_nda_institutions(now), User.email_verified_at.is_not(None))
        case _:
            return true()


def standing(session: Session, user: User, now: datetime | None = None) -> str:
    """The narrowest circle `user` belongs to."""
    now = now or utcnow()
    if user.is_lab:
        return "in-house"
    if has_active_nda(session, user.institution_id, now):
        return "partners"
    if user.email_verified:
        return "research"
    return "public"


def admits(session: Session, release: Release, user: User) -> bool:
    """Whether `release`'s current circle admits `user`."""
    return rank(standing(session, user)) <= rank(release.circle)


#: circles whose releases anyone may see listed (and then ask for), as gated Hub repos are
LISTED_CIRCLES = ("research", "public")


def visible(session: Session, release: Release, user: User | None) -> bool:
    """Whether `user` may see that `release` exists at all.

    Research and public releases are listed to everyone (the page is the door to ask for
    access). In-house and partner releases exist only for the people their circle admits and
    for those who hold or held a grant on them (so a revoked grantee can read why); to anyone
    else they answer "not found", never "forbidden", so their names do not leak.
    """
    if release.circle in LISTED_CIRCLES:
        return True
    if user is None:
        return False
    if admits(session, release, user):
        return True
    held = session.scalar(
        select(Grant.id).where(Grant.release_id == release.id, Grant.user_id == user.id).limit(1)
    )
    return held is not None


@dataclass(frozen=True)
class CircleChange:
    """What setting a circle did: the circles before and after and the grants it revoked."""

    release: str
    before: str
    after: str
    revoked: int


def set_circle(
    session: Session,
    release: Release,
    circle: str,
    *,
    reason: str = "",
    actor: str,
    ip: str | None = None,
) -> CircleChange:
    """Set a release's circle; every active grant whose holder falls outside it is revoked.

    One transaction (the caller's): bulk UPDATEs revoke the grants (and their requests, and
    institution grants without an active NDA), one bulk INSERT queues a mail per grantee, and
    one audit event lists every revoked grant. Revocation is effective on the next request,
    because `authorise_download` reads the grant each time. Widening grants nothing.
    """
    check_circle(circle)
    reason = check_reason(reason)
    before = release.circle
    if rank(circle) > rank(before):
        hooks.check_widening(session, release, circle)
    now = utcnow()
    outside = select(User.id).where(~admitted(circle, now))
    note = reason or f"the release was narrowed to the {circle} circle"
    revoked = session.execute(
        update(Grant)
        .where(Grant.release_id == release.id, Grant.state == "active", Grant.user_id.in_(outside))
        .values(state="revoked", revoked_at=now, revoked_reason=note)
        .returning(Grant.id, Grant.user_id, Grant.request_id)
    ).all()
    request_ids = [row.request_id for row in revoked if row.request_id is not None]
    for chunk in range(0, len(request_ids), 900):
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id.in_(request_ids[chunk : chunk + 900]))
            .values(state="revoked", reason=note, decided_by=actor, decided_at=now)
        )
    if request_ids:
        record(
            session,
            EventTag.Access.RequestRevoked,
            actor=actor,
            subject=f"release:{release.ref}",
            ip=ip,
            payload={"request_ids": sorted(request_ids), "reason": note},
        )
    institution_grants = _revoke_institution_grants(
        session,
        InstitutionGrant.release_id == release.id,
        literal(circle),
        note,
        now,
        actor=actor,
        ip=ip,
    )
    release.circle = circle
    emails: dict[int, str] = {}
    user_ids = sorted({row.user_id for row in revoked})
    for chunk in range(0, len(user_ids), 900):
        emails.update(
            session.execute(
                select(User.id, User.email).where(User.id.in_(user_ids[chunk : chunk + 900]))
            )
            .tuples()
            .all()
        )
    mail.queue_many(
        session,
        (emails[row.user_id] for row in revoked if row.user_id in emails),
        messages.access_revoked(release=release.ref, reason=note, narrowed=True),
    )
    record(
        session,
        EventTag.Access.CircleChanged,
        actor=actor,
        subject=f"release:{release.ref}",
        ip=ip,
        payload={
            "from": before,
            "to": circle,
            "reason": reason,
            "revoked": len(revoked),
            "grant_ids": sorted(row.id for row in revoked),
            "institution_grant_ids": institution_grants,
        },
    )
    hooks.circle_changed(session, release, before, circle, actor)
    return CircleChange(release.ref, before, circle, len(revoked))


def _revoke_institution_grants(
    session: Session,
    condition: ColumnElement[bool],
    circle_of: ColumnElement[str],
    note: str,
    now: datetime,
    *,
    actor: str,
    ip: str | None,
) -> list[int]:
    """Revoke the active institution grants matching `condition` whose release (in
    `circle_of`) no longer admits the institution; one InstitutionGrantRevoked event."""
    partners = InstitutionGrant.institution_id.in_(active_nda_institution_ids(now))
    outside = or_(circle_of == "in-house", and_(circle_of == "partners", ~partners))
    rows = session.execute(
        update(InstitutionGrant)
        .where(condition, InstitutionGrant.state == "active", outside)
        .values(state="revoked", revoked_reason=note)
        .returning(InstitutionGrant.id)
    ).all()
    ids = sorted(row.id for row in rows)
    if ids:
        record(
            session,
            EventTag.Access.InstitutionGrantRevoked,
            actor=actor,
            subject="institution-grants",
            ip=ip,
            payload={"ids": ids, "reason": note},
        )
    return ids


@dataclass(frozen=True)
class NDAEnded:
    """What revoking an NDA did: the NDA and the institution grants it carried."""

    nda: NDA
    institution_grants: list[int]


def revoke_nda(
    session: Session, nda: NDA, *, reason: str, actor: str, ip: str | None = None
) -> NDAEnded:
    """End an NDA early: its members stop being partners at once, and the institution's
    grants on in-house and partner releases are revoked (unless another NDA is active)."""
    now = utcnow()
    organisations.revoke_nda(session, nda, reason=reason, actor=actor, ip=ip, now=now)
    session.flush()
    circle_of = (
        select(Release.circle).where(Release.id == InstitutionGrant.release_id).scalar_subquery()
    )
    revoked = _revoke_institution_grants(
        session,
        InstitutionGrant.institution_id == nda.institution_id,
        circle_of,
        f"the NDA of {nda.institution.name} was revoked: {reason.strip()}",
        now,
        actor=actor,
        ip=ip,
    )
    return NDAEnded(nda, revoked)


def visible_release(session: Session, ref: str, user: User | None) -> Release:
    """The release named `ref` when `user` may see it; otherwise the same NotFound as for a
    name that does not exist, so nobody outside a circle learns what it holds."""
    release = get_release(session, ref)
    if not visible(session, release, user):
        name, version = parse_ref(ref)
        raise NotFound(f"no release {name}@{version}", hint="see the catalogue")
    return release

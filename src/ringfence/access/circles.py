"""Circles: who a release admits, a person's standing, NDAs, and narrowing a release.

A person's standing is the narrowest circle they belong to: lab roles are `in-house`, members
of an institution with an active NDA are `partners`, verified people are `research`, anyone
else `public`. A release admits a person when their standing lies inside its circle.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlalchemy import ColumnElement, and_, false, or_, select, true, update
from sqlalchemy.orm import Session

from ringfence.access import mail
from ringfence.access.models import (
    CIRCLES,
    LAB_ROLES,
    NDA,
    AccessRequest,
    Grant,
    Institution,
    InstitutionGrant,
    User,
)
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.catalogue.services import get_release, parse_ref
from ringfence.db import utcnow
from ringfence.errors import InvalidInput, NotFound, PermissionDenied
from ringfence.storage import BlobStore

MAX_REASON = 500


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


def check_reason(reason: str, *, required: bool = False) -> str:
    """A decision's reason, stripped; at most 500 characters."""
    cleaned = reason.strip()
    if len(cleaned) > MAX_REASON:
        raise InvalidInput(f"reason: use at most {MAX_REASON} characters (got {len(cleaned)})")
    if required and not cleaned:
        raise InvalidInput("reason: say why, the requester will read it")
    return cleaned


def active_nda_institutions(now: datetime) -> ColumnElement[bool]:
    """SQL: the user's institution holds a countersigned, unrevoked, unexpired NDA.

    Never NULL (a NULL would make `NOT admitted(...)` drop people without an institution from
    a narrowing, leaving their grants active).
    """
    return User.institution_id.is_not(None) & User.institution_id.in_(
        select(NDA.institution_id).where(
            NDA.countersigned_at.is_not(None), NDA.revoked_at.is_(None), NDA.expires_at > now
        )
    )


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


def has_active_nda(session: Session, institution_id: int | None, now: datetime) -> bool:
    """Whether the institution holds an active NDA."""
    if institution_id is None:
        return False
    ndas = session.scalars(select(NDA).where(NDA.institution_id == institution_id))
    return any(nda.is_active(now) for nda in ndas)


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
    institution_grants = _revoke_institution_grants(session, release, circle, note, now)
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
        (
            (
                emails[row.user_id],
                f"Your access to {release.ref} was revoked",
                f"Your access to {release.ref} has been revoked: {note}.\n\n"
                "Downloads stop working now. Delete the copies you hold under the licence terms; "
                "you may ask for access again if the release widens.\n",
            )
            for row in revoked
            if row.user_id in emails
        ),
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
    return CircleChange(release.ref, before, circle, len(revoked))


def _revoke_institution_grants(
    session: Session, release: Release, circle: str, note: str, now: datetime
) -> list[int]:
    if rank(circle) >= rank("research"):
        return []
    condition = InstitutionGrant.release_id == release.id
    keep = (
        false()
        if circle == "in-house"
        else InstitutionGrant.institution_id.in_(
            select(NDA.institution_id).where(
                NDA.countersigned_at.is_not(None), NDA.revoked_at.is_(None), NDA.expires_at > now
            )
        )
    )
    rows = session.execute(
        update(InstitutionGrant)
        .where(and_(condition, InstitutionGrant.state == "active", ~keep))
        .values(state="revoked", revoked_reason=note)
        .returning(InstitutionGrant.id)
    ).all()
    return sorted(row.id for row in rows)


def parse_date(value: str, field: str) -> datetime:
    """A YYYY-MM-DD date as the end of that day in UTC."""
    try:
        return datetime.combine(date.fromisoformat(value.strip()), time(23, 59, 59), tzinfo=UTC)
    except ValueError as exc:
        raise InvalidInput(f"{field}: give a date as YYYY-MM-DD") from exc


def get_nda(session: Session, nda_id: int) -> NDA:
    """An NDA by id, or NotFound."""
    nda = session.get(NDA, nda_id)
    if nda is None:
        raise NotFound(f"no NDA {nda_id}", hint="see `ringfence nda list`")
    return nda


def list_ndas(session: Session) -> list[NDA]:
    """Every NDA, newest first."""
    return list(session.scalars(select(NDA).order_by(NDA.id.desc())))


def record_nda(
    session: Session,
    blobs: BlobStore,
    institution: Institution,
    *,
    document: bytes,
    document_name: str,
    signatory: str,
    expires_at: datetime,
    actor: str,
) -> NDA:
    """Store a signed NDA document as a blob and record it (inactive until countersigned)."""
    if not document:
        raise InvalidInput("document: attach the signed NDA (PDF or scan)")
    if len(document) > 50 * 1024 * 1024:
        raise InvalidInput("document: at most 50 MiB")
    signatory = signatory.strip()
    if not signatory or len(signatory) > 200:
        raise InvalidInput(
            "signatory: give who signed for the institution (at most 200 characters)"
        )
    if expires_at <= utcnow():
        raise InvalidInput("expires: the expiry date must lie in the future")
    name = Path(document_name or "nda.pdf").name[:200]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nda"
        path.write_bytes(document)
        sha, _ = blobs.put_file(path)
    nda = NDA(
        institution=institution,
        document_sha256=sha,
        document_name=name,
        signatory=signatory,
        expires_at=expires_at,
    )
    session.add(nda)
    session.flush()
    record(
        session,
        EventTag.Access.NDARecorded,
        actor=actor,
        subject=f"institution:{institution.name}",
        payload={
            "nda_id": nda.id,
            "sha256": sha,
            "signatory": signatory,
            "expires_at": expires_at.isoformat(),
        },
    )
    return nda


def countersign_nda(session: Session, nda: NDA, admin: User, *, ip: str | None = None) -> NDA:
    """A lab admin countersigns; from now until expiry the institution's members are partners."""
    if admin.role != "admin":
        raise PermissionDenied(f"{admin.email} is not an admin", hint="an admin must countersign")
    if nda.revoked_at is not None:
        raise InvalidInput(f"NDA {nda.id} was revoked", hint="record a new one")
    if nda.countersigned_at is None:
        nda.countersigned_by = admin
        nda.countersigned_at = utcnow()
        record(
            session,
            EventTag.Access.NDACountersigned,
            actor=admin.email,
            ip=ip,
            subject=f"institution:{nda.institution.name}",
            payload={"nda_id": nda.id},
        )
    return nda


def revoke_nda(session: Session, nda: NDA, *, reason: str, actor: str) -> NDA:
    """End an NDA early; partner access stops on the next request (grants are not touched)."""
    reason = check_reason(reason, required=True)
    if nda.revoked_at is None:
        nda.revoked_at = utcnow()
        record(
            session,
            EventTag.Access.NDARevoked,
            actor=actor,
            subject=f"institution:{nda.institution.name}",
            payload={"nda_id": nda.id, "reason": reason},
        )
    return nda


def visible_release(session: Session, ref: str, user: User | None) -> Release:
    """The release named `ref` when `user` may see it; otherwise the same NotFound as for a
    name that does not exist, so nobody outside a circle learns what it holds."""
    release = get_release(session, ref)
    if not visible(session, release, user):
        name, version = parse_ref(ref)
        raise NotFound(f"no release {name}@{version}", hint="see the catalogue")
    return release

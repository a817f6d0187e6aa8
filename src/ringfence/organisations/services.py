"""Organisations: institutions, the mail domains they verified, and their NDAs.

A member of an institution with an active NDA (countersigned by a lab admin, not revoked, not
expired) stands in the partners circle; `ringfence.access.circles` reads that through
`has_active_nda` and `active_nda_institutions`.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.accounts.services import DOMAIN, email_domain
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.decisions import check_reason
from ringfence.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ringfence.organisations.models import NDA, Institution
from ringfence.storage import BlobStore


def get_institution(session: Session, name: str) -> Institution:
    """The institution with this name, or NotFound."""
    inst = session.scalars(select(Institution).where(Institution.name == name.strip())).first()
    if inst is None:
        raise NotFound(
            f"no institution {name!r}", hint="add it with `ringfence institutions add NAME`"
        )
    return inst


def list_institutions(session: Session) -> list[Institution]:
    """Every institution, by name."""
    return list(session.scalars(select(Institution).order_by(Institution.name)))


def institution_for_domain(session: Session, email: str) -> Institution | None:
    """The institution that verified the domain of `email` as its own, if any."""
    domain = email_domain(email)
    for institution in session.scalars(select(Institution)):
        if domain in (institution.domains or []):
            return institution
    return None


def add_institution(session: Session, name: str, domains: list[str], *, actor: str) -> Institution:
    """Record an institution and the email domains an admin verified as its own."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 200:
        raise InvalidInput("name: give the institution's name (at most 200 characters)")
    checked = sorted({d.strip().lower().lstrip("@") for d in domains if d.strip()})
    for domain in checked:
        if not DOMAIN.match(domain):
            raise InvalidInput(
                f"domain: {domain!r} is not an email domain", hint="e.g. uni.example"
            )
    if session.scalars(select(Institution).where(Institution.name == cleaned)).first():
        raise Conflict(f"institution {cleaned!r} already exists")
    for other in session.scalars(select(Institution)):
        taken = set(other.domains or []) & set(checked)
        if taken:
            raise Conflict(f"domain {sorted(taken)[0]} already belongs to {other.name!r}")
    inst = Institution(name=cleaned, domains=checked)
    session.add(inst)
    session.flush()
    # Verified people already at these domains join the institution they evidently belong to.
    for user in session.scalars(
        select(User).where(User.institution_id.is_(None), User.email_verified_at.is_not(None))
    ):
        if email_domain(user.email) in checked:
            user.institution = inst
    record(
        session,
        EventTag.Access.InstitutionAdded,
        actor=actor,
        subject=f"institution:{cleaned}",
        payload={"domains": checked},
    )
    return inst


def parse_date(value: str, field: str) -> datetime:
    """A YYYY-MM-DD date as the end of that day in UTC."""
    try:
        return datetime.combine(date.fromisoformat(value.strip()), time(23, 59, 59), tzinfo=UTC)
    except ValueError as exc:
        raise InvalidInput(f"{field}: give a date as YYYY-MM-DD") from exc


def active_nda_institution_ids(now: datetime) -> Select[int]:
    """SQL: the ids of institutions holding a countersigned, unrevoked, unexpired NDA."""
    return select(NDA.institution_id).where(
        NDA.countersigned_at.is_not(None), NDA.revoked_at.is_(None), NDA.expires_at > now
    )


def active_nda_institutions(now: datetime) -> ColumnElement[bool]:
    """SQL: the user's institution holds a countersigned, unrevoked, unexpired NDA.

    Never NULL (a NULL would make `NOT admitted(...)` drop people without an institution from
    a narrowing, leaving their grants active).
    """
    return User.institution_id.is_not(None) & User.institution_id.in_(
        active_nda_institution_ids(now)
    )


def has_active_nda(session: Session, institution_id: int | None, now: datetime) -> bool:
    """Whether the institution holds an active NDA."""
    if institution_id is None:
        return False
    ndas = session.scalars(select(NDA).where(NDA.institution_id == institution_id))
    return any(nda.is_active(now) for nda in ndas)


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


def revoke_nda(
    session: Session,
    nda: NDA,
    *,
    reason: str,
    actor: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> NDA:
    """End an NDA early; its members stop being partners on the next request.

    `ringfence.access.circles.revoke_nda` also withdraws the institution grants it carried.
    """
    reason = check_reason(reason, required=True)
    if nda.revoked_at is None:
        nda.revoked_at = now or utcnow()
        record(
            session,
            EventTag.Access.NDARevoked,
            actor=actor,
            subject=f"institution:{nda.institution.name}",
            ip=ip,
            payload={"nda_id": nda.id, "reason": reason},
        )
    return nda


def nda_record(nda: NDA, now: datetime | None = None) -> dict[str, Any]:
    """An NDA as one flat record (the API and the CLI show the same fields)."""
    return {
        "id": nda.id,
        "institution": nda.institution.name,
        "signatory": nda.signatory,
        "document": nda.document_name,
        "sha256": nda.document_sha256,
        "expires_at": nda.expires_at.date().isoformat(),
        "countersigned_by": nda.countersigned_by.email if nda.countersigned_by else None,
        "revoked_at": nda.revoked_at.isoformat(timespec="seconds") if nda.revoked_at else None,
        "active": nda.is_active(now or utcnow()),
    }

"""The transparency report: how open the lab is, release by release, for everyone to read.

Every release outside the in-house circle, with its circle, licence, how many people hold a
grant in each circle (counts, never names), what holds its next widening (the areas that hold
it, not their reasons, which may name people), its schedule, and how many traces ran on it and
how many of those accused someone. In-house releases do not appear at all.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ringfence.access import circles, hooks
from ringfence.access.models import CIRCLES, Grant, InstitutionGrant
from ringfence.accounts.models import LAB_ROLES, User
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Model, Release
from ringfence.downstream.models import ScheduleStep
from ringfence.organisations.services import active_nda_institution_ids


def _grant_counts(session: Session, release: Release, partners: set[int]) -> dict[str, int]:
    rows = session.execute(
        select(User.role, User.institution_id)
        .join(Grant, Grant.user_id == User.id)
        .where(Grant.release_id == release.id, Grant.state == "active")
    ).all()
    counts: Counter[str] = Counter()
    for role, institution_id in rows:
        if role in LAB_ROLES:
            counts["in-house"] += 1
        elif institution_id in partners:
            counts["partners"] += 1
        else:
            counts["research"] += 1
    return {circle: counts[circle] for circle in CIRCLES[:3]}


def _traces(session: Session, release: Release) -> tuple[int, int]:
    payloads = session.scalars(
        select(AuditEvent.payload).where(
            AuditEvent.tag == str(EventTag.Tracing.TraceRun),
            AuditEvent.subject == f"release:{release.ref}",
        )
    ).all()
    leaks = sum(1 for payload in payloads if (payload or {}).get("accused"))
    return len(payloads), leaks


def _next_circle(circle: str) -> str | None:
    at = circles.rank(circle)
    return CIRCLES[at + 1] if at + 1 < len(CIRCLES) else None


def entry(session: Session, release: Release, partners: set[int]) -> dict[str, Any]:
    """One release's part of the report."""
    traces, leaks = _traces(session, release)
    wider = _next_circle(release.circle)
    held_by = sorted({h.source for h in hooks.holds_on(session, release, wider)}) if wider else []
    schedule = session.scalars(
        select(ScheduleStep)
        .where(ScheduleStep.release_id == release.id)
        .order_by(ScheduleStep.due_at, ScheduleStep.id)
    ).all()
    institution_grants = session.scalar(
        select(func.count(InstitutionGrant.id)).where(
            InstitutionGrant.release_id == release.id, InstitutionGrant.state == "active"
        )
    )
    return {
        "release": release.ref,
        "circle": release.circle,
        "licence": release.licence.ref if release.licence else None,
        "licence_title": release.licence.title if release.licence else None,
        "grants": _grant_counts(session, release, partners),
        "institution_grants": int(institution_grants or 0),
        "gates": {"next_circle": wider, "held_by": held_by},
        "schedule": [
            {
                "circle": s.circle,
                "due_at": s.due_at.isoformat(),
                "state": s.state,
                "held": bool(s.held_reason) and s.state == "planned",
            }
            for s in schedule
        ],
        "traces": traces,
        "confirmed_leaks": leaks,
    }


def report(session: Session, now: datetime) -> dict[str, Any]:
    """The whole report: every release outside the in-house circle, by model and version."""
    partners = set(session.scalars(active_nda_institution_ids(now)))
    releases = session.scalars(
        select(Release)
        .join(Model)
        .where(Release.circle != "in-house")
        .options(selectinload(Release.model), selectinload(Release.licence))
        .order_by(Model.name, Release.version)
    ).all()
    return {
        "generated_at": now.isoformat(),
        "releases": [entry(session, release, partners) for release in releases],
    }

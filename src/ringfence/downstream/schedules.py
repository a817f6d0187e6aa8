"""Staged release schedules: planned widenings that happen on their date if nothing holds them.

A step ("research on 1 March") is taken by `run_due(services, now)` through
`access.circles.set_circle`, which asks every registered hold provider (gates, open
incidents, a derivative's bases) first. A held step stays planned and is tried again at the
next run; each step taken and each new hold is audited and mailed to the lab's admins (a hold
that has not changed since the last run is not mailed again). The time comes from the
caller, so tests and the job queue decide what "now" is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from ringfence.access import circles
from ringfence.access.hooks import WideningHeld
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import transaction
from ringfence.downstream.models import ScheduleStep
from ringfence.errors import InvalidInput
from ringfence.mail import messages
from ringfence.mail import services as mail
from ringfence.wiring import Services

#: the actor named in the audit log for steps the schedule takes
ACTOR = "schedule"


def plan(
    session: Session, release: Release, circle: str, due_at: datetime, *, actor: str
) -> ScheduleStep:
    """Plan a widening of `release` to `circle` on `due_at`."""
    circles.check_circle(circle)
    if circle == "in-house":
        raise InvalidInput("circle: a schedule widens; narrowing is done at once with `circle set`")
    if due_at.tzinfo is None:
        raise InvalidInput("due: give the date with its time zone (e.g. 2027-03-01T00:00Z)")
    step = ScheduleStep(release_id=release.id, circle=circle, due_at=due_at, created_by=actor)
    session.add(step)
    session.flush()
    record(
        session,
        EventTag.Downstream.ScheduleStepPlanned,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={"step": step.id, "circle": circle, "due_at": due_at.isoformat()},
    )
    return step


def steps(session: Session, release: Release | None = None) -> list[ScheduleStep]:
    """Planned and past steps by date (one release's when given)."""
    query = select(ScheduleStep).options(selectinload(ScheduleStep.release))
    if release is not None:
        query = query.where(ScheduleStep.release_id == release.id)
    return list(session.scalars(query.order_by(ScheduleStep.due_at, ScheduleStep.id)))


@dataclass(frozen=True)
class StepOutcome:
    """What one run did with one due step."""

    release: str
    circle: str
    outcome: str  # "taken", "held" or "skipped"
    reason: str = ""


def _tell_admins(session: Session, message: messages.Message) -> None:
    admins = session.scalars(
        select(User.email).where(User.role == "admin", User.is_active.is_(True))
    )
    mail.queue_many(session, list(admins), message)


def _take(services: Services, session: Session, step: ScheduleStep, now: datetime) -> StepOutcome:
    release = step.release
    due = step.due_at.strftime("%Y-%m-%d %H:%M UTC")
    if circles.rank(release.circle) >= circles.rank(step.circle):
        step.state, step.done_at = "skipped", now
        return StepOutcome(release.ref, step.circle, "skipped", f"already {release.circle}")
    try:
        # set_circle asks the holds before it writes anything: a held step changes nothing.
        circles.set_circle(
            session, release, step.circle, reason=f"release schedule (step {step.id})", actor=ACTOR
        )
    except WideningHeld as exc:
        reason = "; ".join(f"{h.source}: {h.reason}" for h in exc.holds)[:500]
        if reason != step.held_reason:
            step.held_reason = reason
            record(
                session,
                EventTag.Downstream.ScheduleStepHeld,
                actor=ACTOR,
                subject=f"release:{release.ref}",
                payload={"step": step.id, "circle": step.circle, "holds": reason},
            )
            _tell_admins(
                session,
                messages.schedule_step(
                    release=release.ref,
                    circle=step.circle,
                    due=due,
                    taken=False,
                    reason=reason,
                    base_url=services.settings.base_url,
                ),
            )
        return StepOutcome(release.ref, step.circle, "held", reason)
    step.state, step.done_at, step.held_reason = "done", now, ""
    record(
        session,
        EventTag.Downstream.ScheduleStepTaken,
        actor=ACTOR,
        subject=f"release:{release.ref}",
        payload={"step": step.id, "circle": step.circle, "due_at": step.due_at.isoformat()},
    )
    _tell_admins(
        session,
        messages.schedule_step(
            release=release.ref,
            circle=step.circle,
            due=due,
            taken=True,
            reason="",
            base_url=services.settings.base_url,
        ),
    )
    return StepOutcome(release.ref, step.circle, "taken")


def _due(session: Session, now: datetime) -> list[ScheduleStep]:
    return list(
        session.scalars(
            select(ScheduleStep)
            .where(ScheduleStep.state == "planned", ScheduleStep.due_at <= now)
            .options(selectinload(ScheduleStep.release))
            .order_by(ScheduleStep.due_at, ScheduleStep.id)
        )
    )


def _claim(session: Session, step: ScheduleStep) -> bool:
    """Lock the step's row and re-read it: True when it is still planned.

    Two workers' runs may both have listed a step; the write lock (a row lock on PostgreSQL,
    the database's on SQLite) makes the second wait for the first's commit, and the re-read
    then shows it taken (or its hold already recorded), so nothing is done or mailed twice.
    """
    locked = session.execute(
        update(ScheduleStep)
        .where(ScheduleStep.id == step.id, ScheduleStep.state == "planned")
        .values(state="planned")
        .execution_options(synchronize_session=False)
    )
    if not getattr(locked, "rowcount", 0):
        return False
    session.refresh(step)
    session.refresh(step.release)
    return True


def run_due(services: Services, now: datetime | None = None) -> list[StepOutcome]:
    """Take every planned step due at `now` (default: the services' clock), oldest first."""
    now = now or services.clock()
    outcomes: list[StepOutcome] = []
    with transaction(services.sessions) as session:
        for step in _due(session, now):
            if _claim(session, step):
                outcomes.append(_take(services, session, step, now))
    if outcomes:
        services.mailer.deliver_pending(services.sessions)
    return outcomes

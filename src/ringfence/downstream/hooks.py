"""What downstream adds to circle changes (registered with `ringfence.access.hooks`).

- a listener: when a release narrows, every derivative's owner is mailed, and a derivative
  that ringfence hosts is narrowed to its base's circle at once (which notifies *its*
  derivatives in turn); webhooks follow from the audit events these write;
- a hold: a hosted derivative may not widen beyond the narrowest circle of its bases;
- on a base's licence change (its audit event, as webhooks follow them), owners are mailed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from ringfence.access import circles, hooks
from ringfence.audit.models import AuditEvent
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Model, Release
from ringfence.downstream import derivatives
from ringfence.mail import messages
from ringfence.mail import services as mail


def base_narrowed(session: Session, release: Release, before: str, after: str, actor: str) -> None:
    """Tell the owners of `release`'s derivatives, and cap the hosted ones to `after`."""
    if circles.rank(after) >= circles.rank(before):
        return
    found = derivatives.derivatives_of(session, release)
    if not found:
        return
    reason = f"its base {release.ref} was narrowed to the {after} circle"
    capped: list[str] = []
    for derivative in found:
        hosted = derivative.hosted_release
        cap = hosted is not None and circles.rank(hosted.circle) > circles.rank(after)
        mail.queue(
            session,
            derivative.owner.email,
            messages.base_narrowed(
                base=release.ref,
                derivative=derivative.name,
                before=before,
                circle=after,
                reason="",
                capped=cap,
            ),
        )
        if cap and hosted is not None:
            circles.set_circle(session, hosted, after, reason=reason, actor=actor)
            capped.append(derivative.name)
            record(
                session,
                EventTag.Downstream.DerivativeCapped,
                actor=actor,
                subject=f"derivative:{derivative.name}",
                payload={"base": release.ref, "release": hosted.ref, "circle": after},
            )
    record(
        session,
        EventTag.Downstream.BaseNarrowedNoticed,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={
            "from": before,
            "to": after,
            "derivatives": [d.name for d in found],
            "owners_mailed": len(found),
            "capped": capped,
        },
    )


def within_bases(session: Session, release: Release, circle: str) -> list[hooks.Hold]:
    """A hosted derivative may go no wider than the narrowest of its bases."""
    derivative = derivatives.hosting(session, release)
    if derivative is None:
        return []
    return [
        hooks.Hold(
            "downstream", f"it is a derivative of {base.ref}, which is in the {base.circle} circle"
        )
        for base in derivative.bases
        if circles.rank(base.circle) < circles.rank(circle)
    ]


def licence_changed(session: Session, audit: AuditEvent) -> int:
    """Mail the owners of the derivatives of the release whose licence `audit` records."""
    name, _, version = audit.subject.removeprefix("release:").rpartition("@")
    release = session.scalars(
        select(Release).join(Model).where(Model.name == name, Release.version == version)
    ).first()
    if release is None:
        return 0
    found = derivatives.derivatives_of(session, release)
    payload = audit.payload or {}
    for derivative in found:
        mail.queue(
            session,
            derivative.owner.email,
            messages.base_licence_changed(
                base=release.ref,
                derivative=derivative.name,
                licence=str(payload.get("to")),
                before=payload.get("from"),
            ),
        )
    return len(found)


@event.listens_for(Session, "before_flush")
def _licence_audited(session: Session, flush_context: Any, instances: Any) -> None:
    new = [
        obj
        for obj in session.new
        if isinstance(obj, AuditEvent) and obj.tag == str(EventTag.Access.ReleaseLicenceChanged)
    ]
    with session.no_autoflush:  # the lookups must not flush the half-built unit of work
        for audit in new:
            licence_changed(session, audit)


hooks.register_listener("downstream", base_narrowed)
hooks.register_hold("downstream", within_bases)

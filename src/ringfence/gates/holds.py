"""The gates' hold on widening: access asks it before a release widens (access.hooks)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ringfence.access import hooks
from ringfence.access.models import CIRCLES
from ringfence.catalogue.models import Release


def gates_hold(session: Session, release: Release, circle: str) -> list[hooks.Hold]:
    """A hold when `circle` lies beyond the widest circle the gates allow `release`."""
    from ringfence.gates.services import widest_allowed

    widest = widest_allowed(session, release)
    if CIRCLES.index(circle) <= CIRCLES.index(widest.circle):
        return []
    causes = "; ".join(f"{cap.source}: {cap.reason}" for cap in widest.capped_by)
    return [
        hooks.Hold(
            "gates",
            f"the gates allow at most the {widest.circle} circle ({causes})",
        )
    ]


def register() -> None:
    """Ask the gates before any release widens."""
    hooks.register_hold("gates", gates_hold)

"""Incidents: a reported leak, its evidence pack, takedown notice and the lab's actions.

Loading the area registers its hold on widening with access: an open incident that holds
its release keeps `set_circle` from widening it until the incident is closed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ringfence.access.hooks import Hold, register_hold
from ringfence.catalogue.models import Release


def _holds(session: Session, release: Release, circle: str) -> list[Hold]:
    # imported here: the services import access, which may itself be loading this package
    from ringfence.incidents.services import widening_holds

    return widening_holds(session, release, circle)


register_hold("incidents", _holds)

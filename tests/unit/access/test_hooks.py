"""Holds on widening and circle-change listeners, registered by other areas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from ringfence.access import circles, hooks
from ringfence.catalogue.models import Release
from ringfence.wiring import Services
from tests.fixtures_access import make_release


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as s:
        yield s


@pytest.fixture
def registered() -> Iterator[list[tuple[str, str]]]:
    heard: list[tuple[str, str]] = []

    def hold(session: Session, release: Release, circle: str) -> list[hooks.Hold]:
        if circle == "public":
            return [hooks.Hold("test", "public needs a review")]
        return []

    def listen(session: Session, release: Release, before: str, after: str, actor: str) -> None:
        heard.append((before, after))

    hooks.register_hold("test", hold)
    hooks.register_listener("test", listen)
    yield heard
    hooks._providers.pop("test")
    hooks._listeners.pop("test")


def test_a_hold_refuses_widening_and_listeners_hear_changes(
    session: Session, registered: list[tuple[str, str]]
) -> None:
    release = make_release(session)
    release.circle = "partners"
    circles.set_circle(session, release, "research", actor="admin")
    with pytest.raises(hooks.WideningHeld, match="test: public needs a review") as caught:
        circles.set_circle(session, release, "public", actor="admin")
    assert caught.value.http_status == 409 and release.circle == "research"
    # Narrowing is never held.
    circles.set_circle(session, release, "in-house", actor="admin")
    assert registered == [("partners", "research"), ("research", "in-house")]

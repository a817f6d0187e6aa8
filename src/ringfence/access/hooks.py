"""Where other areas take part in a circle change: holds on widening, listeners after any change.

Access owns circles, but whether a release may widen is also the business of areas that sit
above it: gates cap the widest circle a release may reach, an open incident holds it, a staged
schedule waits on both. Rather than access importing each of them, each registers a
`HoldProvider` here when its module loads (`register_hold`), and `set_circle` asks them all
before it widens. Listeners (`on_circle_changed`) hear every change once it is recorded, in the
same transaction: derivative notices and webhooks start there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ringfence.catalogue.models import Release
from ringfence.errors import Conflict


@dataclass(frozen=True)
class Hold:
    """One reason a release may not widen to a circle: which area holds it, and why."""

    source: str  # "gates", "incidents", ...
    reason: str  # one line a person reads: what holds it and what would lift it


#: (session, release, target circle) -> the holds on widening `release` to that circle
HoldProvider = Callable[[Session, Release, str], list[Hold]]
#: (session, release, circle before, circle after, actor) -> None; in the change's transaction
CircleListener = Callable[[Session, Release, str, str, str], None]

_providers: dict[str, HoldProvider] = {}
_listeners: dict[str, CircleListener] = {}


class WideningHeld(Conflict):
    """A release may not widen to a circle while something holds it."""

    def __init__(self, release: str, circle: str, holds: list[Hold]) -> None:
        reasons = "; ".join(f"{hold.source}: {hold.reason}" for hold in holds)
        super().__init__(
            f"{release} may not widen to the {circle} circle: {reasons}",
            hint="resolve what holds it, then set the circle again",
        )
        self.holds = holds


def register_hold(name: str, provider: HoldProvider) -> None:
    """Ask `provider` before any release widens (registering a name again replaces it)."""
    _providers[name] = provider


def register_listener(name: str, listener: CircleListener) -> None:
    """Tell `listener` of every circle change (registering a name again replaces it)."""
    _listeners[name] = listener


def holds_on(session: Session, release: Release, circle: str) -> list[Hold]:
    """Every hold on widening `release` to `circle`, from every registered provider."""
    holds: list[Hold] = []
    for provider in _providers.values():
        holds.extend(provider(session, release, circle))
    return holds


def check_widening(session: Session, release: Release, circle: str) -> None:
    """Raise `WideningHeld` when anything holds `release` from widening to `circle`."""
    holds = holds_on(session, release, circle)
    if holds:
        raise WideningHeld(release.ref, circle, holds)


def circle_changed(session: Session, release: Release, before: str, after: str, actor: str) -> None:
    """Tell every listener that `release` went from `before` to `after`."""
    for listener in _listeners.values():
        listener(session, release, before, after, actor)

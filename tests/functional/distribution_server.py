"""A live ringfence server on a free loopback port, for clients that speak real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.live import serve


@contextmanager
def live_server(services: Services, port: int | None = None) -> Iterator[str]:
    """Serve the app for `services` in a thread; yields its base URL and stops it afterwards."""
    with serve(create_app(services), port) as base:
        yield base

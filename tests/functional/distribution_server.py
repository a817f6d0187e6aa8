"""A live ringfence server on a free loopback port, for clients that speak real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ringfence.web.app import create_app
from ringfence.wiring import Services
from tests.live import free_port, serve


@contextmanager
def live_server(services: Services, port: int | None = None) -> Iterator[str]:
    """Serve the app for `services` in a thread; yields its base URL and stops it afterwards.

    The server's configured base URL becomes the live one: links are made from it.
    """
    port = port or free_port()
    services.settings.base_url = f"http://127.0.0.1:{port}"
    with serve(create_app(services), port) as base:
        yield base

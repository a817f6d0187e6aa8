"""The services a command runs against (from the environment, built once per process)."""

from __future__ import annotations

from functools import cache

from ringfence.wiring import Services, build


@cache
def services() -> Services:
    """Services from the environment, with the schema brought up to date."""
    built = build()
    built.prepare()
    return built

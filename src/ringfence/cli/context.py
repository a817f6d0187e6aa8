"""The services a command runs against (from the environment, built once per process).

Wiring pulls in the whole server side (database, web, fingerprinting): it is imported when a
command first asks for its services, so client commands and `--help` start without it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ringfence.wiring import Services


@cache
def services() -> Services:
    """Services from the environment, with the schema brought up to date."""
    from ringfence.wiring import build

    built = build()
    built.prepare()
    return built


def database_url() -> str | None:
    """The database URL the environment names (for messages; None when unreadable)."""
    try:
        from ringfence.settings import Settings

        return Settings().resolved_database_url
    except Exception:  # the message about the first failure matters more than this one
        return None

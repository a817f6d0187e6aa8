"""Fixtures for functional tests (each area's live in a `tests/fixtures_<area>.py` module)."""

from __future__ import annotations

from tests.fixtures_access import smtp_server

__all__ = ["smtp_server"]

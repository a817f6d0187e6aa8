"""Imports every area's tables so that metadata (and Alembic) sees the whole schema."""

from __future__ import annotations

import importlib

AREAS = (
    "catalogue",
    "audit",
    "accounts",
    "organisations",
    "mail",
    "access",
    "fingerprint",
    "distribution",
    "tracing",
    "gates",
)


def load_all() -> None:
    """Import `ringfence.<area>.models` for each area that has one."""
    for area in AREAS:
        try:
            importlib.import_module(f"ringfence.{area}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"ringfence.{area}.models":
                raise

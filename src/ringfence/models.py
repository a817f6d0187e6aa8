"""Imports every area's tables so that metadata (and Alembic) sees the whole schema, and the
modules by which areas take part in others' decisions (hold providers, listeners)."""

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
    "jobs",
    "downstream",
    "webhooks",
    "incidents",
    "hosted",
    "gates",
)

#: modules that register themselves where other areas ask (access.hooks, session events)
#: when imported: loaded with the tables, so every process that has services has them
LISTENERS = ("webhooks.events", "downstream.hooks")


def load_all() -> None:
    """Import `ringfence.<area>.models` for each area that has one, then the LISTENERS."""
    for module in (*(f"{area}.models" for area in AREAS), *LISTENERS):
        try:
            importlib.import_module(f"ringfence.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ringfence.{module}":
                raise

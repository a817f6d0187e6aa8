"""Catalogue commands: init, serve, publish, releases."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the catalogue commands to the root app."""

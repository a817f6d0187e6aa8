"""Printing for commands: rich tables for people, one JSON document with --json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def emit(
    rows: Sequence[dict[str, Any]] | dict[str, Any], *, as_json: bool, title: str = ""
) -> None:
    """Print rows as a table (or one record as key/value lines), or as JSON."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if isinstance(rows, dict):
        for key, value in rows.items():
            console.print(f"[bold]{key}[/bold]: {value}")
        return
    if not rows:
        console.print(f"no {title or 'rows'}")
        return
    table = Table(title=title or None)
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)

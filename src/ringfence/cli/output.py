"""Printing for commands: rich tables for people, one JSON document with --json.

`console` (stdout) and `errors` (stderr) are made on first use: importing rich's console
costs more than the rest of `ringfence --help`, which prints without it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    errors: Console


_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    if name not in _consoles:
        from rich.console import Console

        _consoles[name] = Console(stderr=name == "errors")
    return _consoles[name]


def __getattr__(name: str) -> Any:
    """`console` and `errors`, made when a module first reads them (PEP 562)."""
    if name in ("console", "errors"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def emit(
    rows: Sequence[dict[str, Any]] | dict[str, Any], *, as_json: bool, title: str = ""
) -> None:
    """Print rows as a table (or one record as key/value lines), or as JSON."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    out = _console("console")
    if isinstance(rows, dict):
        for key, value in rows.items():
            out.print(f"[bold]{key}[/bold]: {value}")
        return
    if not rows:
        out.print(f"no {title or 'rows'}")
        return
    from rich.table import Table

    table = Table(title=title or None)
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)

"""The Jinja2 environment shared by every area's pages."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates


def _filesize(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["filesize"] = _filesize

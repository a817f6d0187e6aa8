"""The checked-in hostile files and the script that makes them, for the format tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

HOSTILE_DIR = Path(__file__).resolve().parents[2] / "data" / "hostile"


def make_hostile() -> ModuleType:
    """tests/data/hostile/make_hostile.py, imported by path (tests/data is not a package)."""
    spec = importlib.util.spec_from_file_location("make_hostile", HOSTILE_DIR / "make_hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

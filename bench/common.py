"""Helpers shared by the benchmark modules: timing, peak memory of a child, ratio rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Fastest wall time of `repeat` calls (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def ratio_row(
    section: str,
    name: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    *,
    higher_is_better: bool,
    goal: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    """A figure as a ratio against its baseline; for times, ratio = value / baseline."""
    ratio = value / baseline_value if baseline_value else None
    met = None
    goal_text = ""
    if goal is not None and ratio is not None:
        met = ratio >= goal if higher_is_better else ratio <= goal
        goal_text = f"{'>=' if higher_is_better else '<='} {goal}x"
    return {
        "section": section,
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "goal": goal_text,
        "met": met,
        "note": note,
    }

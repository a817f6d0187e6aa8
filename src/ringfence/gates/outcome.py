"""What a gate returns: passed or not, its figures, the circle it allows, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    """One gate's verdict; `evidence` feeds the report (plots, redacted examples)."""

    name: str
    passed: bool
    cap: str
    figures: dict[str, Any]
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The verdict as `gates run --json` prints it."""
        return {
            "name": self.name,
            "passed": self.passed,
            "figures": self.figures,
            "reason": self.reason,
        }

"""The reason that goes with a decision (a rejection, a revocation), read by whom it concerns."""

from __future__ import annotations

from ringfence.errors import InvalidInput

MAX_REASON = 500


def check_reason(reason: str, *, required: bool = False) -> str:
    """A decision's reason, stripped; at most 500 characters."""
    cleaned = reason.strip()
    if len(cleaned) > MAX_REASON:
        raise InvalidInput(f"reason: use at most {MAX_REASON} characters (got {len(cleaned)})")
    if required and not cleaned:
        raise InvalidInput("reason: say why, the requester will read it")
    return cleaned

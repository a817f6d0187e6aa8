"""The clauses a takedown notice cites are the licence's redistribution terms."""

from __future__ import annotations

from ringfence.access.licences import shipped_licence_text
from ringfence.incidents.notice import breached_clauses


def test_the_shipped_licence_yields_its_redistribution_clause() -> None:
    clauses = breached_clauses(shipped_licence_text())
    assert clauses and clauses[0].startswith("No redistribution.")
    assert all("\n" not in c for c in clauses)


def test_a_licence_without_numbered_clauses_yields_none() -> None:
    assert breached_clauses("Do what you like.") == []

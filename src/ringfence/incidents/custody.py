"""The chain of custody: each step hashed over the one before, so an altered step shows."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.db import utcnow
from ringfence.incidents.models import CustodyStep, Evidence

GENESIS = "0" * 64


def _chain(
    prev: str, evidence_id: int, step: str, actor: str, ip: str | None, at: str, sha: str | None
) -> str:
    body = json.dumps(
        {
            "prev": prev,
            "evidence": evidence_id,
            "step": step,
            "actor": actor,
            "ip": ip,
            "at": at,
            "sha256": sha,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def custody_step(
    session: Session,
    evidence: Evidence,
    step: str,
    *,
    actor: str,
    ip: str | None,
    sha256: str | None,
) -> CustodyStep:
    """Append one step to a piece of evidence's chain of custody."""
    last = session.scalars(
        select(CustodyStep)
        .where(CustodyStep.evidence_id == evidence.id)
        .order_by(CustodyStep.id.desc())
    ).first()
    at = utcnow()
    row = CustodyStep(
        evidence_id=evidence.id,
        step=step,
        actor=actor,
        ip=ip,
        at=at,
        sha256=sha256,
        chain=_chain(
            last.chain if last else GENESIS, evidence.id, step, actor, ip, _iso(at), sha256
        ),
    )
    session.add(row)
    session.flush()
    return row


def _iso(at: Any) -> str:
    return str(at.isoformat(timespec="microseconds"))


def verify_custody(evidence: Evidence) -> bool:
    """Whether every custody step still hashes to its recorded chain value, in order."""
    prev = GENESIS
    for step in evidence.custody:
        expected = _chain(
            prev, evidence.id, step.step, step.actor, step.ip, _iso(step.at), step.sha256
        )
        if expected != step.chain:
            return False
        prev = step.chain
    return True

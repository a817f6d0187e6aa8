"""Incidents: open one from a leak report, attach evidence and traces, act, close.

The area's public face. Every change is recorded in the audit log under `incident:N`, and
every action it takes through another area (revoking a grant, narrowing a circle) goes
through that area's own service, which records its own event too. While an incident that
holds widening is open, `access.set_circle` refuses to widen its release (the hold provider
registered in `ringfence.incidents`); `blocking_incidents` answers the same question for a
schedule engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ringfence.access.hooks import Hold
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.catalogue.services import get_release
from ringfence.db import utcnow
from ringfence.errors import InvalidInput, NotFound
from ringfence.incidents.actions import (
    check_text,
    narrow_circle,
    require_open,
    revoke_implicated_grant,
    subject_of,
)
from ringfence.incidents.custody import custody_step, verify_custody
from ringfence.incidents.models import KINDS, Evidence, Incident
from ringfence.incidents.records import (
    action_record,
    audit_excerpt,
    evidence_record,
    implicated,
    incident_record,
    show,
)
from ringfence.wiring import Services

MAX_SOURCE = 2000


#: the area's public face: records and custody are re-exported from their modules
__all__ = [
    "action_record",
    "add_attribution",
    "add_suspect",
    "attribute_endpoint",
    "audit_excerpt",
    "blocking_incidents",
    "close_incident",
    "custody_step",
    "evidence_record",
    "get_incident",
    "implicated",
    "incident_record",
    "list_incidents",
    "narrow_circle",
    "open_incident",
    "revoke_implicated_grant",
    "show",
    "trace_suspect",
    "verify_custody",
    "widening_holds",
]


def open_incident(
    session: Session,
    *,
    kind: str,
    source: str,
    summary: str = "",
    release_ref: str | None = None,
    holds_widening: bool = True,
    actor: str,
    ip: str | None = None,
) -> Incident:
    """Open an incident from a leak report: a file, a URL or an OpenAI-compatible endpoint."""
    if kind not in KINDS:
        raise InvalidInput(f"kind: one of {', '.join(KINDS)}, not {kind!r}")
    source = check_text(source, "source", limit=MAX_SOURCE, required=True)
    if kind in ("url", "endpoint") and not source.startswith(("http://", "https://")):
        raise InvalidInput(f"source: a {kind} is an http(s) URL, not {source!r}")
    summary = check_text(summary, "summary", limit=20_000)
    release = get_release(session, release_ref) if release_ref else None
    incident = Incident(
        kind=kind,
        source=source,
        summary=summary,
        release_id=release.id if release else None,
        holds_widening=holds_widening,
        opened_by=actor,
        opened_ip=ip,
    )
    session.add(incident)
    session.flush()
    record(
        session,
        EventTag.Incident.Opened,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={
            "kind": kind,
            "source": source,
            "release": release.ref if release else None,
            "holds_widening": holds_widening,
        },
    )
    return incident


def get_incident(session: Session, incident_id: int) -> Incident:
    """An incident by id, or NotFound."""
    incident = session.get(
        Incident,
        incident_id,
        options=[selectinload(Incident.evidence).selectinload(Evidence.custody)],
    )
    if incident is None:
        raise NotFound(f"no incident {incident_id}", hint="see `ringfence incident list`")
    return incident


def list_incidents(session: Session, *, state: str = "") -> list[Incident]:
    """Incidents, newest first, optionally of one state."""
    query = select(Incident).order_by(Incident.id.desc()).limit(1000)
    if state:
        if state not in ("open", "closed"):
            raise InvalidInput(f"state: open or closed, not {state!r}")
        query = query.where(Incident.state == state)
    return list(session.scalars(query))


# --- evidence and its chain of custody ------------------------------------------------------


def _file_digest(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or directory")
    if not out:
        raise InvalidInput("no suspect file given")
    return out


def add_suspect(
    services: Services,
    session: Session,
    incident: Incident,
    paths: Sequence[Path],
    *,
    actor: str,
    ip: str | None = None,
    name: str | None = None,
) -> Evidence:
    """Record suspect files: their hashes, kept in the blob store, with custody steps."""
    require_open(incident)
    files = _files(paths)
    hashed = [(path.name, *_file_digest(path)) for path in files]
    digests: list[dict[str, Any]] = [
        {"name": name, "sha256": sha, "size": size} for name, sha, size in hashed
    ]
    # one file: its own hash; several: the hash over their sorted `sha256sum` lines
    if len(hashed) == 1:
        sha_all, size_all = hashed[0][1], hashed[0][2]
    else:
        lines = "".join(f"{sha}  {name}\n" for name, sha, _ in sorted(hashed))
        sha_all = hashlib.sha256(lines.encode()).hexdigest()
        size_all = sum(size for _, _, size in hashed)
    evidence = Evidence(
        incident_id=incident.id,
        kind="suspect",
        name=check_text(name or files[0].name, "name", limit=512, required=True),
        sha256=sha_all,
        size=size_all,
        payload={"files": digests},
        added_by=actor,
    )
    session.add(evidence)
    session.flush()
    custody_step(session, evidence, "received", actor=actor, ip=ip, sha256=sha_all)
    for path, digest in zip(files, digests, strict=True):
        stored, _ = services.blobs.put_file(path)
        if stored != digest["sha256"]:
            raise InvalidInput(f"{path.name} changed while it was being recorded")
    custody_step(session, evidence, "stored", actor="ringfence", ip=None, sha256=sha_all)
    record(
        session,
        EventTag.Incident.EvidenceAdded,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={"evidence_id": evidence.id, "kind": "suspect", "files": digests},
    )
    return evidence


def trace_suspect(
    services: Services,
    session: Session,
    incident: Incident,
    paths: Sequence[Path],
    *,
    release_ref: str | None = None,
    actor: str,
    ip: str | None = None,
) -> tuple[Evidence, Any]:
    """Record suspect files, trace them, and attach the trace report to the incident."""
    from ringfence.tracing import services as tracing

    suspect = add_suspect(services, session, incident, paths, actor=actor, ip=ip)
    if release_ref is None and incident.release is not None:
        release_ref = incident.release.ref
    result = tracing.trace(services, session, list(paths), release_ref=release_ref, actor=actor)
    custody_step(session, suspect, "traced", actor=actor, ip=ip, sha256=suspect.sha256)
    report = {
        **result.summary(),
        "trace_audit_seq": result.audit_seq,
        "suspect_evidence_id": suspect.id,
        "candidates": result.candidates,
        "records": result.records,
        "threshold_z": result.threshold_z,
        "recipients_scored": result.recipients_scored,
    }
    trace = Evidence(
        incident_id=incident.id,
        kind="trace",
        name=f"trace of {suspect.name}",
        sha256=hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest(),
        payload=json.loads(json.dumps(report, default=str)),
        added_by=actor,
    )
    session.add(trace)
    session.flush()
    custody_step(session, trace, "received", actor=actor, ip=ip, sha256=trace.sha256)
    if incident.release_id is None and result.release:
        incident.release_id = get_release(session, result.release).id
    record(
        session,
        EventTag.Incident.TraceAttached,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={
            "evidence_id": trace.id,
            "release": result.release,
            "accused": [a.recipient for a in result.accused],
            "trace_audit_seq": result.audit_seq,
        },
    )
    return trace, result


def add_attribution(
    session: Session,
    incident: Incident,
    report: dict[str, Any],
    *,
    actor: str,
    ip: str | None = None,
) -> Evidence:
    """Attach a black-box attribution report (an endpoint's answers against a release)."""
    require_open(incident)
    payload = json.loads(json.dumps(report, default=str))
    evidence = Evidence(
        incident_id=incident.id,
        kind="attribution",
        name=f"attribution of {report.get('endpoint', incident.source)}",
        sha256=hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest(),
        payload=payload,
        added_by=actor,
    )
    session.add(evidence)
    session.flush()
    custody_step(session, evidence, "received", actor=actor, ip=ip, sha256=evidence.sha256)
    if incident.release_id is None and report.get("release") and report.get("verdict") == "ours":
        incident.release_id = get_release(session, str(report["release"])).id
    record(
        session,
        EventTag.Incident.EndpointAttributed,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={
            "evidence_id": evidence.id,
            "verdict": report.get("verdict"),
            "p_value": report.get("p_value"),
            "queries": report.get("queries"),
        },
    )
    return evidence


def close_incident(
    session: Session, incident: Incident, *, resolution: str, actor: str, ip: str | None = None
) -> Incident:
    """Close an incident (its hold on widening ends with it)."""
    require_open(incident)
    incident.resolution = check_text(resolution, "resolution", limit=20_000, required=True)
    incident.state = "closed"
    incident.closed_by = actor
    incident.closed_at = utcnow()
    record(
        session,
        EventTag.Incident.Closed,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={"resolution": incident.resolution},
    )
    return incident


# --- holds ----------------------------------------------------------------------------------


def blocking_incidents(session: Session, release_id: int) -> list[Incident]:
    """The open incidents that hold this release from widening (what a schedule engine asks)."""
    return list(
        session.scalars(
            select(Incident)
            .where(
                Incident.release_id == release_id,
                Incident.state == "open",
                Incident.holds_widening.is_(True),
            )
            .order_by(Incident.id)
        )
    )


def widening_holds(session: Session, release: Release, circle: str) -> list[Hold]:
    """The hold provider access asks before a release widens."""
    return [
        Hold(
            "incidents",
            f"incident {i.id} ({i.kind} {i.source[:80]}) is open; close it to lift the hold",
        )
        for i in blocking_incidents(session, release.id)
    ]


def attribute_endpoint(
    services: Services,
    session: Session,
    incident: Incident,
    *,
    endpoint: str,
    model: str,
    api_key: str = "",
    release_ref: str | None = None,
    budget: int = 32,
    alpha: float = 0.01,
    mode: str = "auto",
    actor: str,
    ip: str | None = None,
) -> Evidence:
    """Ask an OpenAI-compatible endpoint whether it serves the release; attach the report."""
    from ringfence.incidents import attribution

    require_open(incident)
    endpoint = check_text(endpoint, "endpoint", limit=MAX_SOURCE, required=True)
    if not endpoint.startswith(("http://", "https://")):
        raise InvalidInput(
            f"endpoint: an http(s) base URL such as https://host/v1, not {endpoint!r}"
        )
    model = check_text(model, "model", limit=200, required=True)
    if release_ref:
        release = get_release(session, release_ref)
    elif incident.release is not None:
        release = incident.release
    else:
        raise InvalidInput("name the release to test the endpoint against")
    key = services.secrets.derive(f"incidents:probes:{release.ref}")
    with attribution.release_directory(services.blobs, release.artifacts) as directory:
        reference = attribution.load(directory)
    report = attribution.attribute(
        reference,
        key,
        endpoint=endpoint,
        model=model,
        api_key=api_key,
        budget=budget,
        alpha=alpha,
        mode=mode,
    )
    report["release"] = release.ref
    return add_attribution(session, incident, report, actor=actor, ip=ip)

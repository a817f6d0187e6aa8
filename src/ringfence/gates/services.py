"""The gates area's public face: provenance, gate runs, the widest allowed circle, overrides.

`widest_allowed` is what access asks (through the hold registered in `holds`) before a
release widens: the narrowest of what the provenance policy and the latest gate run allow,
widened only by an admin's override that a second admin signed off.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.access.models import CIRCLES
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import transaction, utcnow
from ringfence.decisions import check_reason
from ringfence.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ringfence.gates import policy as policies
from ringfence.gates.models import GateResult, GateRun, Override, Provenance
from ringfence.gates.policy import Cap, Policy, narrowest
from ringfence.gates.provenance import ProvenanceFile
from ringfence.gates.runner import Progress, provenance_gate, run_suite
from ringfence.storage import BlobStore
from ringfence.wiring import Services


def attach_provenance(
    session: Session, release: Release, manifest: ProvenanceFile, *, actor: str
) -> Provenance:
    """Keep a validated provenance manifest with a release (one per release, immutable)."""
    if get_provenance(session, release) is not None:
        raise Conflict(f"{release.ref} already has a provenance manifest")
    row = Provenance(
        release=release, document=manifest.document, sha256=manifest.sha256, recorded_by=actor
    )
    session.add(row)
    session.flush()
    record(
        session,
        EventTag.Gates.ProvenanceRecorded,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={"sha256": manifest.sha256, "datasets": len(manifest.document["datasets"])},
    )
    return row


def get_provenance(session: Session, release: Release) -> Provenance | None:
    """The release's provenance manifest, if one was recorded."""
    return session.scalar(select(Provenance).where(Provenance.release_id == release.id))


def latest_run(session: Session, release: Release, *, finished: bool = False) -> GateRun | None:
    """The release's most recent gate run (only a finished one when `finished`)."""
    query = select(GateRun).where(GateRun.release_id == release.id)
    if finished:
        query = query.where(GateRun.state == "done")
    return session.scalar(query.order_by(GateRun.id.desc()).limit(1))


def active_override(session: Session, release: Release) -> Override | None:
    """The newest signed-off override on a release, if any."""
    return session.scalar(
        select(Override)
        .where(Override.release_id == release.id, Override.state == "active")
        .order_by(Override.id.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class Widest:
    """The widest circle a release may reach, what caps it, and any override in force."""

    circle: str
    #: the circle by the gates and provenance alone
    gated: str
    #: the caps that set `gated` (the narrowest ones)
    capped_by: list[Cap]
    override: Override | None


def caps_of(session: Session, release: Release, policy: Policy) -> list[Cap]:
    """Every cap on a release: its provenance by the policy, and each gate of its last run."""
    row = get_provenance(session, release)
    caps: list[Cap] = []
    run = latest_run(session, release, finished=True)
    if run is None:
        outcome = provenance_gate(policy, row.document if row else None)
        if not outcome.passed:
            caps.append(Cap("provenance", outcome.cap, outcome.reason))
        caps.append(Cap("gates", policy.not_run, "the gates have not run on this release"))
        return caps
    for result in run.results:
        if not result.passed:
            caps.append(Cap(result.name, result.cap, result.reason))
    return caps


def widest_allowed(session: Session, release: Release, policy: Policy | None = None) -> Widest:
    """The widest circle `release` may reach now, with the gate(s) that cap it."""
    policy = policy or policies.current()
    caps = caps_of(session, release, policy)
    gated = narrowest([c.circle for c in caps])
    capping = [c for c in caps if c.circle == gated]
    override = active_override(session, release)
    circle = gated
    if override is not None and CIRCLES.index(override.circle) > CIRCLES.index(gated):
        circle = override.circle
    return Widest(circle, gated, capping, override)


def _admin(user: User) -> None:
    if user.role != "admin":
        raise PermissionDenied(f"{user.email} is not an admin", hint="an admin decides overrides")


def request_override(
    session: Session, release: Release, circle: str, *, reason: str, admin: User
) -> Override:
    """An admin's override of the gates, pending a second admin's sign-off."""
    _admin(admin)
    if circle not in CIRCLES:
        raise InvalidInput(
            f"circle: {circle!r} is not a circle", hint=f"use one of {', '.join(CIRCLES)}"
        )
    if circle == "in-house":
        raise InvalidInput("circle: every release may be in-house; an override widens past it")
    reason = check_reason(reason, required=True)
    row = Override(release=release, circle=circle, reason=reason, requested_by=admin.email)
    session.add(row)
    session.flush()
    record(
        session,
        EventTag.Gates.OverrideRequested,
        actor=admin.email,
        subject=f"release:{release.ref}",
        payload={"override_id": row.id, "circle": circle, "reason": reason},
        user_id=admin.id,
    )
    return row


def sign_off(session: Session, override_id: int, *, admin: User) -> Override:
    """A second admin signs off a pending override; it is in force from then on."""
    _admin(admin)
    row = session.get(Override, override_id)
    if row is None:
        raise NotFound(f"no gate override {override_id}")
    if row.state != "pending":
        raise Conflict(f"gate override {override_id} is {row.state}, not pending")
    if row.requested_by == admin.email:
        raise PermissionDenied(
            "the admin who asked for an override cannot sign it off",
            hint="a second admin signs it off",
        )
    row.state, row.signed_off_by, row.signed_off_at = "active", admin.email, utcnow()
    record(
        session,
        EventTag.Gates.OverrideSignedOff,
        actor=admin.email,
        subject=f"release:{row.release.ref}",
        payload={"override_id": row.id, "circle": row.circle, "requested_by": row.requested_by},
        user_id=admin.id,
    )
    return row


@contextlib.contextmanager
def release_files(
    blobs: BlobStore, artifacts: list[tuple[str, str]]
) -> Iterator[tuple[Path, dict[str, Path]]]:
    """A release's (path, sha256) files laid out as a directory (links to local blobs,
    copies from a remote store)."""
    with tempfile.TemporaryDirectory(prefix="ringfence-gates-") as tmp:
        root = Path(tmp)
        files: dict[str, Path] = {}
        for path, sha256 in artifacts:
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            local = blobs.local_path(sha256)
            if local is not None:
                os.symlink(local, target)
            else:
                with blobs.open(sha256) as src, target.open("wb") as dst:
                    while chunk := src.read(8 * 1024 * 1024):
                        dst.write(chunk)
            files[path] = target
        yield root, files


def run_gates(
    services: Services,
    release_id: int,
    progress: Progress,
    *,
    actor: str = "cli",
    threads: int | None = None,
) -> int:
    """Run the whole gate suite on a release and store its results and report; the run's id.

    Written to run as a background job: it opens its own transactions, reports progress both
    to `progress` and to the run's row (which the release page reads), and records a failed
    run rather than leaving it running.
    """
    from ringfence.gates import report as reports

    policy = policies.current(services.settings)
    with transaction(services.sessions) as session:
        release = session.get(Release, release_id)
        if release is None:
            raise NotFound(f"no release with id {release_id}")
        ref = release.ref
        artifacts = [(a.path, a.sha256) for a in release.artifacts]
        row = get_provenance(session, release)
        document = row.document if row else None
        run = GateRun(release=release, started_by=actor, policy=policy.name)
        session.add(run)
        session.flush()
        run_id = run.id
        record(
            session,
            EventTag.Gates.RunStarted,
            actor=actor,
            subject=f"release:{ref}",
            payload={"run_id": run_id, "policy": policy.name},
        )

    def report_progress(fraction: float, message: str) -> None:
        progress(fraction, message)
        with transaction(services.sessions) as session:
            current = session.get(GateRun, run_id)
            if current is not None:
                current.progress, current.message = fraction, message

    try:
        with release_files(services.blobs, artifacts) as (directory, files):
            outcomes = run_suite(
                files, directory, document, policy, report_progress, threads=threads
            )
    except Exception as exc:
        with transaction(services.sessions) as session:
            failed = session.get(GateRun, run_id)
            assert failed is not None
            failed.state, failed.finished_at = "failed", utcnow()
            failed.message = f"{type(exc).__name__}: {exc}".split("\n")[0][:500]
            record(
                session,
                EventTag.Gates.RunFailed,
                actor=actor,
                subject=f"release:{ref}",
                payload={"run_id": run_id, "error": failed.message},
            )
        raise
    widest = narrowest([o.cap for o in outcomes])
    with transaction(services.sessions) as session:
        done = session.get(GateRun, run_id)
        assert done is not None
        done.results = [
            GateResult(name=o.name, passed=o.passed, cap=o.cap, figures=o.figures, reason=o.reason)
            for o in outcomes
        ]
        done.widest_circle = widest
        done.report = reports.build(done.release, document, policy, outcomes, widest)
        done.state, done.progress, done.message, done.finished_at = "done", 1.0, "done", utcnow()
        record(
            session,
            EventTag.Gates.RunFinished,
            actor=actor,
            subject=f"release:{ref}",
            payload={
                "run_id": run_id,
                "widest_circle": widest,
                "gates": {o.name: o.passed for o in outcomes},
            },
        )
    return run_id


def model_card(
    session: Session, release: Release, published: Callable[[], str | None]
) -> str | None:
    """The README.md Hub clients get for `release`: the latest finished run's model card,
    None before any finished run.

    `published()` gives the publisher's own README.md text (None when they shipped none);
    it is read only when there is a card to make, and its body follows the metadata block.
    """
    from ringfence.gates import report as reports

    run = latest_run(session, release, finished=True)
    if run is None or run.report is None:
        return None
    licence = release.licence.slug if release.licence else None
    return reports.model_card(run.report, licence, published())


def run_summary(session: Session, run: GateRun) -> dict[str, object]:
    """A run as `gates run --json` prints it."""
    widest = widest_allowed(session, run.release)
    return {
        "release": run.release.ref,
        "widest_circle": widest.circle,
        "gates": [
            {"name": r.name, "passed": r.passed, "figures": r.figures, "reason": r.reason}
            for r in run.results
        ],
    }

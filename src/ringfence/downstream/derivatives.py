"""Derivatives: registering a model built on releases, and checking its lineage.

A derivative names its base releases and how it came from them, as a Hugging Face model card
does with `base_model` and `base_model_relation`. Where ringfence can see its weights (an
uploaded file, or a hash that matches a file ringfence stores), it checks the declaration
with the tracing area's release identification: the lineage is `verified` when the weights
correlate best with a declared base, `unverified` otherwise; without weights it stays
`declared`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ringfence.access.circles import visible_release
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Artifact, Release
from ringfence.catalogue.services import get_release, list_releases
from ringfence.downstream.models import RELATIONS, Derivative, DerivativeBase
from ringfence.errors import Conflict, InvalidInput, NotFound, RingfenceError
from ringfence.wiring import Services

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Registration:
    """What a derivative's owner declares."""

    name: str
    relation: str
    bases: list[str]  # release refs, NAME@VERSION
    url: str = ""
    weights_sha256: str = ""
    hosted: str = ""  # the ringfence release that hosts it (the lab's admins only)


def _check(registration: Registration) -> Registration:
    name = registration.name.strip()
    if not NAME.match(name):
        raise InvalidInput(
            "name: letters, digits and ._/- (at most 200)", hint="e.g. uni/tiny-chat"
        )
    if registration.relation not in RELATIONS:
        raise InvalidInput(f"relation: use one of {', '.join(RELATIONS)}")
    bases = sorted({b.strip() for b in registration.bases if b.strip()})
    if not bases:
        raise InvalidInput("base: name the release it is built on, e.g. smollm2@1.0")
    if registration.relation != "merge" and len(bases) > 1:
        raise InvalidInput("base: only a merge has several bases")
    url = registration.url.strip()
    if url and (not url.startswith(("https://", "http://")) or len(url) > 500):
        raise InvalidInput("url: an http(s) address of at most 500 characters")
    digest = registration.weights_sha256.strip().lower()
    if digest and not SHA256.match(digest):
        raise InvalidInput("weights_sha256: 64 hexadecimal digits")
    return Registration(
        name, registration.relation, bases, url, digest, registration.hosted.strip()
    )


def register(
    services: Services,
    session: Session,
    owner: User,
    registration: Registration,
    *,
    weights: Path | None = None,
    by: User | None = None,
) -> Derivative:
    """Record `owner`'s derivative of releases they may see; check its lineage where weights
    show. `by`: who registers it, when not the owner (the lab's people, for hosted ones)."""
    from ringfence.tracing.suspect import file_sha256

    by = by or owner
    reg = _check(registration)
    bases = [visible_release(session, ref, owner) for ref in reg.bases]
    if session.scalar(select(Derivative.id).where(Derivative.name == reg.name)) is not None:
        raise Conflict(f"a derivative named {reg.name} is registered already")
    hosted: Release | None = None
    if reg.hosted:
        if not by.is_lab:
            raise InvalidInput("hosted: only the lab's people say which release hosts a model")
        hosted = get_release(session, reg.hosted)
        if hosted in bases:
            raise InvalidInput("hosted: a release is not its own derivative")
    derivative = Derivative(
        name=reg.name,
        owner_id=owner.id,
        relation=reg.relation,
        url=reg.url,
        hosted_release_id=hosted.id if hosted else None,
        weights_sha256=(file_sha256(weights) if weights else reg.weights_sha256) or None,
    )
    session.add(derivative)
    session.flush()
    for base in bases:
        session.add(DerivativeBase(derivative_id=derivative.id, release_id=base.id))
    session.flush()
    record(
        session,
        EventTag.Downstream.DerivativeRegistered,
        actor=by.email,
        subject=f"derivative:{derivative.name}",
        payload={
            "bases": [b.ref for b in bases],
            "relation": reg.relation,
            "hosted": hosted.ref if hosted else None,
            "weights_sha256": derivative.weights_sha256,
            "owner": owner.email,
        },
        user_id=owner.id,
    )
    check_lineage(services, session, derivative, bases, weights=weights, actor=by.email)
    return derivative


def _stored_weights(
    services: Services, session: Session, derivative: Derivative
) -> tuple[Path, str] | None:
    """A weights file of the derivative that ringfence holds (the hosted release's, or the
    stored file whose hash it was registered with) and its name in its release."""
    query = select(Artifact).where(Artifact.format.in_(("safetensors", "gguf")))
    if derivative.hosted_release_id is not None:
        query = query.where(Artifact.release_id == derivative.hosted_release_id)
    elif derivative.weights_sha256:
        query = query.where(Artifact.sha256 == derivative.weights_sha256)
    else:
        return None
    artifact = session.scalars(query.order_by(Artifact.size.desc())).first()
    if artifact is None:
        return None
    path = services.blobs.local_path(artifact.sha256)
    return (path, Path(artifact.path).name) if path is not None else None


def check_lineage(
    services: Services,
    session: Session,
    derivative: Derivative,
    bases: list[Release],
    *,
    weights: Path | None = None,
    actor: str,
) -> str:
    """Set and audit the derivative's lineage from its weights: verified, unverified, declared."""
    # Imported here: every process loads this module (its circle listener), few check weights.
    from ringfence.tracing.match import identify_release
    from ringfence.tracing.suspect import open_suspect

    stored = None if weights else _stored_weights(services, session, derivative)
    if weights is None and stored is None:
        derivative.lineage, derivative.lineage_note = "declared", "no weights to check against"
        return derivative.lineage
    own = {derivative.hosted_release_id}
    # Its own weights' file, stored as a release of its own, would match itself: leave out
    # every release holding that exact file, and the hosting release.
    if derivative.weights_sha256:
        own |= set(
            session.scalars(
                select(Artifact.release_id).where(Artifact.sha256 == derivative.weights_sha256)
            )
        )
    candidates = [r for r in list_releases(session) if r.id not in own]
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-lineage-"))
    try:
        path = weights
        if stored is not None:
            # Blobs are named by hash; the suspect reader knows a format by its file's name.
            path = workdir / stored[1]
            path.symlink_to(stored[0])
        assert path is not None
        with open_suspect([path], hash_files=False) as suspect:
            # The declared bases first: a derivative that matches one needs no wider search.
            try:
                found, correlation, _ = identify_release(services, session, suspect, bases)
            except RingfenceError:
                found, correlation, _ = identify_release(services, session, suspect, candidates)
    except RingfenceError as exc:  # no release matches, or the file is not weights
        derivative.lineage, derivative.lineage_note = "unverified", exc.message[:500]
    else:
        if found.id in {b.id for b in bases}:
            derivative.lineage = "verified"
            derivative.lineage_note = (
                f"its weights match {found.ref} (correlation {correlation:.2f})"
            )
        else:
            derivative.lineage = "unverified"
            derivative.lineage_note = (
                f"its weights match {found.ref} (correlation {correlation:.2f}), "
                "not the declared base"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    record(
        session,
        EventTag.Downstream.LineageChecked,
        actor=actor,
        subject=f"derivative:{derivative.name}",
        payload={"lineage": derivative.lineage, "note": derivative.lineage_note},
    )
    return derivative.lineage


def derivatives_of(session: Session, release: Release) -> list[Derivative]:
    """The derivatives that name `release` as a base."""
    return list(
        session.scalars(
            select(Derivative)
            .join(DerivativeBase, DerivativeBase.derivative_id == Derivative.id)
            .where(DerivativeBase.release_id == release.id)
            .options(selectinload(Derivative.hosted_release), selectinload(Derivative.owner))
            .order_by(Derivative.name)
        )
    )


def hosting(session: Session, release: Release) -> Derivative | None:
    """The derivative `release` hosts, if it is one."""
    return session.scalars(
        select(Derivative).where(Derivative.hosted_release_id == release.id)
    ).first()


def owned_by(session: Session, owner: User) -> list[Derivative]:
    """`owner`'s derivatives, by name."""
    return list(
        session.scalars(
            select(Derivative)
            .where(Derivative.owner_id == owner.id)
            .options(selectinload(Derivative.bases))
            .order_by(Derivative.name)
        )
    )


def get_derivative(session: Session, name: str) -> Derivative:
    """The derivative called `name`."""
    found = session.scalars(select(Derivative).where(Derivative.name == name)).first()
    if found is None:
        raise NotFound(f"no derivative {name}")
    return found

"""Catalogue operations: the organisation, publishing releases, finding them, licences."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.manifest import ManifestEntry, manifest_sha256
from ringfence.catalogue.models import (
    Artifact,
    Licence,
    Model,
    Organisation,
    Release,
    TensorEntry,
)
from ringfence.errors import Conflict, InvalidInput, NotFound, RingfenceError
from ringfence.fingerprint.code import CodeParams
from ringfence.fingerprint.plan import check_capacity, fitted_length
from ringfence.formats.index import WeightsIndex, read_index, sniff_format
from ringfence.storage import BlobStore

SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
#: files a Hugging Face-layout directory may hold that are never published
SKIPPED_NAMES = {".gitattributes", ".DS_Store"}


def parse_ref(ref: str) -> tuple[str, str]:
    """Split `MODEL@VERSION` (an optional `ORG/` prefix is accepted and dropped)."""
    name, sep, version = ref.rpartition("@")
    name = name.split("/", 1)[-1]
    if not sep or not MODEL_NAME.match(name) or not VERSION.match(version):
        raise InvalidInput(
            f"{ref!r} is not a release reference",
            hint="write it as MODEL@VERSION, e.g. smollm2@1.0",
        )
    return name, version


def organisation(session: Session) -> Organisation:
    """The lab's organisation; ringfence must have been initialised."""
    org = session.scalars(select(Organisation).order_by(Organisation.id)).first()
    if org is None:
        raise NotFound("ringfence is not initialised", hint="run `ringfence init --org SLUG` first")
    return org


def init_organisation(session: Session, slug: str, name: str | None = None) -> Organisation:
    """Create the organisation, or return it when it exists with the same slug."""
    if not SLUG.match(slug):
        raise InvalidInput(
            f"{slug!r} is not a valid organisation slug",
            hint="use lowercase letters, digits, '.', '_' or '-' (at most 64)",
        )
    existing = session.scalars(select(Organisation)).first()
    if existing is not None:
        if existing.slug != slug:
            raise Conflict(
                f"ringfence is already initialised for organisation {existing.slug!r}",
                hint="use a fresh RINGFENCE_HOME for another organisation",
            )
        return existing
    org = Organisation(slug=slug, name=name or slug)
    session.add(org)
    session.flush()
    record(session, EventTag.Catalogue.OrganisationInitialised, actor="cli", subject=slug)
    return org


def get_release(session: Session, ref: str) -> Release:
    """The release named `MODEL@VERSION`, with its artifacts and tensors loaded."""
    name, version = parse_ref(ref)
    release = session.scalars(
        select(Release)
        .join(Model)
        .where(Model.name == name, Release.version == version)
        .options(selectinload(Release.artifacts).selectinload(Artifact.tensors))
    ).first()
    if release is None:
        raise NotFound(f"no release {name}@{version}", hint="see `ringfence releases list`")
    return release


def list_releases(session: Session) -> list[Release]:
    """Every release, newest first."""
    return list(
        session.scalars(
            select(Release)
            .join(Model)
            .options(selectinload(Release.artifacts), selectinload(Release.model))
            .order_by(Release.created_at.desc(), Release.id.desc())
        )
    )


def list_models(session: Session) -> list[Model]:
    """Every model with its releases."""
    return list(
        session.scalars(select(Model).options(selectinload(Model.releases)).order_by(Model.name))
    )


def get_licence(session: Session, ref: str) -> Licence:
    """A licence by `slug@version`, or the newest version for a bare slug."""
    slug, _, version = ref.partition("@")
    query = select(Licence).where(Licence.slug == slug)
    if version:
        if not version.isdigit():
            raise InvalidInput(f"{ref!r} is not a licence reference", hint="write SLUG@VERSION")
        query = query.where(Licence.version == int(version))
    licence = session.scalars(query.order_by(Licence.version.desc())).first()
    if licence is None:
        raise NotFound(f"no licence {ref!r}", hint="add it with `ringfence licence add`")
    return licence


def add_licence(session: Session, slug: str, title: str, text: str, actor: str) -> Licence:
    """Add the next version of a licence; identical text to the newest version is a no-op."""
    if not SLUG.match(slug):
        raise InvalidInput(f"{slug!r} is not a valid licence slug", hint="use lowercase a-z0-9._-")
    if not text.strip():
        raise InvalidInput("the licence text is empty", hint="give the full text in markdown")
    digest = hashlib.sha256(text.encode()).hexdigest()
    newest = session.scalars(
        select(Licence).where(Licence.slug == slug).order_by(Licence.version.desc())
    ).first()
    if newest is not None and newest.sha256 == digest:
        return newest
    licence = Licence(
        slug=slug,
        version=(newest.version + 1) if newest else 1,
        title=title,
        text=text,
        sha256=digest,
    )
    session.add(licence)
    session.flush()
    record(
        session,
        EventTag.Catalogue.LicenceAdded,
        actor=actor,
        subject=licence.ref,
        payload={"sha256": digest, "title": title},
    )
    return licence


@dataclass(frozen=True)
class SourceFile:
    """A file to publish: where it is on disk and its path inside the release."""

    source: Path
    path: str


def collect_files(path: Path) -> list[SourceFile]:
    """The files of a release from a Hugging Face-layout directory or one weights file."""
    if not path.exists():
        raise InvalidInput(f"{path} does not exist", hint="give a directory or a weights file")
    if path.is_file():
        return [SourceFile(path, path.name)]
    files = []
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or item.name in SKIPPED_NAMES:
            continue
        if item.is_symlink():
            raise InvalidInput(
                f"{rel} is a symbolic link", hint="publish real files, not links to elsewhere"
            )
        if item.is_file():
            files.append(SourceFile(item, rel.as_posix()))
    if not files:
        raise InvalidInput(f"{path} holds no files", hint="give a directory with the model's files")
    return files


def validate_files(files: list[SourceFile]) -> dict[str, tuple[str, WeightsIndex | None]]:
    """Classify and strictly validate every file; weights get their tensor index."""
    result: dict[str, tuple[str, WeightsIndex | None]] = {}
    for f in files:
        kind = sniff_format(f.source)
        if kind in ("safetensors", "gguf", "pickle"):
            try:
                index: WeightsIndex | None = read_index(f.source)
            except RingfenceError as exc:
                if f.path not in exc.message:
                    exc.message = f"{f.path}: {exc.message}"
                raise
            result[f.path] = (kind, index)
        else:
            result[f.path] = (kind, None)
    if not any(index for _, index in result.values()):
        raise InvalidInput(
            "the release has no weights file", hint="include .safetensors or .gguf weights"
        )
    return result


def publish(
    session: Session,
    blobs: BlobStore,
    path: Path,
    *,
    model: str,
    version: str,
    licence: str | None = None,
    actor: str = "cli",
    fingerprint: CodeParams | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Release:
    """Validate, store blobs content-addressed and record the release in the caller's transaction.

    `fingerprint` is what the release's fingerprint code must withstand (default: a million
    recipients, 8 colluders, 1e-9); a release whose matrices cannot carry that code is refused.
    The code is as long as the matrices carry, up to 3x the least (`plan.fitted_length`),
    unless `fingerprint.length` fixes it. Everything is validated before anything is stored or
    recorded, so a refused or interrupted publish leaves no release behind (stored blobs are
    content-addressed and harmless).
    """
    fingerprint = fingerprint or CodeParams()
    if not MODEL_NAME.match(model):
        raise InvalidInput(f"{model!r} is not a valid model name", hint="use letters, digits, ._-")
    if not VERSION.match(version):
        raise InvalidInput(f"{version!r} is not a valid version", hint="use letters, digits, ._+-")
    org = organisation(session)
    lic = get_licence(session, licence) if licence else None
    existing = session.scalars(
        select(Release).join(Model).where(Model.name == model, Release.version == version)
    ).first()
    if existing is not None:
        raise Conflict(
            f"release {model}@{version} already exists and releases are immutable",
            hint="publish under a new version",
        )
    files = collect_files(path)
    classified = validate_files(files)
    indexes = [index for _, index in classified.values() if index is not None]
    check_capacity(indexes, fingerprint)
    code_length = fingerprint.length or fitted_length(indexes, fingerprint)

    entries: list[ManifestEntry] = []
    artifacts: list[Artifact] = []
    for f in files:
        kind, index = classified[f.path]
        sha, size = blobs.put_file(f.source)
        if progress:
            progress(f.path, size)
        entries.append(ManifestEntry(f.path, size, sha))
        artifact = Artifact(
            path=f.path,
            size=size,
            sha256=sha,
            format=kind,
            data_offset=index.data_offset if index else None,
        )
        if index is not None:
            artifact.tensors = [
                TensorEntry(
                    name=t.name, dtype=t.dtype, shape=list(t.shape), begin=t.begin, end=t.end
                )
                for t in index.tensors
            ]
        artifacts.append(artifact)

    model_row = session.scalars(
        select(Model).where(Model.organisation_id == org.id, Model.name == model)
    ).first()
    if model_row is None:
        model_row = Model(organisation_id=org.id, name=model)
        session.add(model_row)
        session.flush()
    release = Release(
        model=model_row,
        version=version,
        licence=lic,
        circle="in-house",
        manifest_sha256=manifest_sha256(model, version, entries),
        total_size=sum(e.size for e in entries),
        parameter_count=sum(i.parameter_count for i in indexes),
        fingerprint_recipients=fingerprint.max_recipients,
        fingerprint_colluders=fingerprint.max_colluders,
        fingerprint_bound=fingerprint.false_accusation,
        fingerprint_density_log2=fingerprint.density_log2,
        fingerprint_code_length=code_length,
        artifacts=artifacts,
    )
    session.add(release)
    session.flush()
    record(
        session,
        EventTag.Catalogue.ReleasePublished,
        actor=actor,
        subject=release.ref,
        payload={
            "manifest_sha256": release.manifest_sha256,
            "files": [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in entries],
            "licence": lic.ref if lic else None,
            "fingerprint": {
                "max_recipients": fingerprint.max_recipients,
                "max_colluders": fingerprint.max_colluders,
                "false_accusation": fingerprint.false_accusation,
            },
        },
    )
    return release

"""Catalogue pages (models, releases, files) and the catalogue part of the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ringfence.access.circles import visible, visible_release
from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Release
from ringfence.web.deps import db_session
from ringfence.web.security import optional_api_user, optional_page_user
from ringfence.web.templating import templates

router = APIRouter()


class ArtifactOut(BaseModel):
    """One file of a release."""

    path: str
    size: int
    #: None for weights when the caller is not lab staff: each recipient gets their own bytes
    #: (see their signed manifest), and the original's hash is the lab's to know
    sha256: str | None
    format: str
    tensors: int


class ReleaseOut(BaseModel):
    """A release as the API shows it."""

    model: str
    version: str
    circle: str
    licence: str | None
    #: the lab's people see the original's manifest hash; everyone else the hash of their own
    #: signed manifest (None until it is computed, or without a grant): the original's hash
    #: would tell anyone whether a file is the unmarked original
    manifest_sha256: str | None
    size: int
    parameters: int
    created_at: str
    artifacts: list[ArtifactOut]


WEIGHT_FORMATS = ("safetensors", "gguf")


def release_out(session: Session, release: Release, user: User | None) -> ReleaseOut:
    """The API view of a release (original weight hashes only for the lab's own people)."""
    lab = user is not None and user.is_lab
    manifest: str | None = release.manifest_sha256 if lab else None
    if user is not None and not lab:
        from ringfence.distribution.services import manifest_row

        own = manifest_row(session, release.id, user.id)
        manifest = own.root_sha256 if own is not None and own.state == "ready" else None
    return ReleaseOut(
        model=release.model.name,
        version=release.version,
        circle=release.circle,
        licence=release.licence.ref if release.licence else None,
        manifest_sha256=manifest,
        size=release.total_size,
        parameters=release.parameter_count,
        created_at=release.created_at.isoformat(timespec="seconds"),
        artifacts=[
            ArtifactOut(
                path=a.path,
                size=a.size,
                sha256=a.sha256 if lab or a.format not in WEIGHT_FORMATS else None,
                format=a.format,
                tensors=len(a.tensors),
            )
            for a in release.artifacts
        ],
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def catalogue_page(
    request: Request,
    session: Session = Depends(db_session),
    user: User | None = Depends(optional_page_user),
) -> Any:
    """Every model and the releases the caller may see."""
    listing = []
    for model in catalogue.list_models(session):
        releases = [r for r in model.releases if visible(session, r, user)]
        if releases:
            listing.append((model, releases))
    return templates.TemplateResponse(request, "catalogue.html", {"listing": listing})


@router.get("/models/{name}/{version}", response_class=HTMLResponse, include_in_schema=False)
def release_page(
    request: Request,
    name: str,
    version: str,
    session: Session = Depends(db_session),
    user: User | None = Depends(optional_page_user),
) -> Any:
    """One release: circle, licence, files with sizes and hashes, tensor counts."""
    release = visible_release(session, f"{name}@{version}", user)
    return templates.TemplateResponse(request, "release.html", {"release": release})


@router.get("/api/v1/releases", response_model=list[ReleaseOut], tags=["catalogue"])
def api_releases(
    session: Session = Depends(db_session), user: User | None = Depends(optional_api_user)
) -> list[ReleaseOut]:
    """Every release the caller may see, newest first."""
    return [
        release_out(session, r, user)
        for r in catalogue.list_releases(session)
        if visible(session, r, user)
    ]


@router.get("/api/v1/releases/{name}/{version}", response_model=ReleaseOut, tags=["catalogue"])
def api_release(
    name: str,
    version: str,
    session: Session = Depends(db_session),
    user: User | None = Depends(optional_api_user),
) -> ReleaseOut:
    """One release with its files (not found when the caller may not see it)."""
    return release_out(session, visible_release(session, f"{name}@{version}", user), user)

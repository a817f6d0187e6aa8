"""Catalogue pages (models, releases, files) and the catalogue part of the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Release
from ringfence.web.deps import db_session
from ringfence.web.templating import templates

router = APIRouter()


class ArtifactOut(BaseModel):
    """One file of a release."""

    path: str
    size: int
    sha256: str
    format: str
    tensors: int


class ReleaseOut(BaseModel):
    """A release as the API shows it."""

    model: str
    version: str
    circle: str
    licence: str | None
    manifest_sha256: str
    size: int
    parameters: int
    created_at: str
    artifacts: list[ArtifactOut]


def release_out(release: Release) -> ReleaseOut:
    """The API view of a release."""
    return ReleaseOut(
        model=release.model.name,
        version=release.version,
        circle=release.circle,
        licence=release.licence.ref if release.licence else None,
        manifest_sha256=release.manifest_sha256,
        size=release.total_size,
        parameters=release.parameter_count,
        created_at=release.created_at.isoformat(timespec="seconds"),
        artifacts=[
            ArtifactOut(
                path=a.path, size=a.size, sha256=a.sha256, format=a.format, tensors=len(a.tensors)
            )
            for a in release.artifacts
        ],
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def catalogue_page(request: Request, session: Session = Depends(db_session)) -> Any:
    """Every model and its releases."""
    models = catalogue.list_models(session)
    return templates.TemplateResponse(request, "catalogue.html", {"models": models})


@router.get("/models/{name}/{version}", response_class=HTMLResponse, include_in_schema=False)
def release_page(
    request: Request, name: str, version: str, session: Session = Depends(db_session)
) -> Any:
    """One release: circle, licence, files with sizes and hashes, tensor counts."""
    release = catalogue.get_release(session, f"{name}@{version}")
    return templates.TemplateResponse(request, "release.html", {"release": release})


@router.get("/api/v1/releases", response_model=list[ReleaseOut], tags=["catalogue"])
def api_releases(session: Session = Depends(db_session)) -> list[ReleaseOut]:
    """Every release, newest first."""
    return [release_out(r) for r in catalogue.list_releases(session)]


@router.get("/api/v1/releases/{name}/{version}", response_model=ReleaseOut, tags=["catalogue"])
def api_release(name: str, version: str, session: Session = Depends(db_session)) -> ReleaseOut:
    """One release with its files."""
    return release_out(catalogue.get_release(session, f"{name}@{version}"))

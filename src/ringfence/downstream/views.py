"""Downstream pages and API: transparency (public), lineage graphs, one's derivatives."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from ringfence.access.circles import visible_release
from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.downstream import derivatives, lineage, transparency
from ringfence.downstream import requests as request_notices
from ringfence.downstream.derivatives import Registration
from ringfence.downstream.models import RELATIONS, Derivative
from ringfence.errors import InvalidInput
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import redirect, render
from ringfence.web.security import (
    Permission,
    api_user,
    optional_page_user,
    page_user,
    verify_csrf,
)
from ringfence.webhooks import services as webhooks

router = APIRouter()

#: a page or image anyone may cache briefly; it names no one
_PUBLIC_CACHE = {"Cache-Control": "public, max-age=60"}


@router.get("/transparency", response_class=HTMLResponse, include_in_schema=False)
def transparency_page(request: Request, session: Session = Depends(db_session)) -> Response:
    """The public transparency report (every release outside the in-house circle)."""
    data = transparency.report(session, get_services(request).clock())
    response = render(request, "downstream/transparency.html", {"report": data})
    response.headers.update(_PUBLIC_CACHE)
    return response


@router.get("/transparency.json", tags=["downstream"])
def transparency_json(request: Request, session: Session = Depends(db_session)) -> Response:
    """The transparency report as JSON (public; counts, never names)."""
    data = transparency.report(session, get_services(request).clock())
    return JSONResponse(data, headers=_PUBLIC_CACHE)


def _graph_release(session: Session, name: str, version: str, user: User | None) -> Release:
    return visible_release(session, f"{name}@{version}", user)


@router.get(
    "/models/{name}/{version}/lineage", response_class=HTMLResponse, include_in_schema=False
)
def lineage_page(
    request: Request,
    name: str,
    version: str,
    session: Session = Depends(db_session),
    user: User | None = Depends(optional_page_user),
) -> Response:
    """A release's lineage: its bases and derivatives, as an image and a table."""
    release = _graph_release(session, name, version, user)
    graph = lineage.build(session, release, user)
    return render(
        request,
        "downstream/lineage.html",
        {
            "release": release,
            "graph": graph,
            "derivatives": derivatives.derivatives_of(session, release),
        },
    )


@router.get("/models/{name}/{version}/lineage.svg", include_in_schema=False)
def lineage_image(
    name: str,
    version: str,
    session: Session = Depends(db_session),
    user: User | None = Depends(optional_page_user),
) -> Response:
    """The lineage graph drawn server-side as SVG."""
    release = _graph_release(session, name, version, user)
    body = lineage.svg(lineage.build(session, release, user))
    # An image that runs nothing, whatever a name in it says.
    return Response(
        body,
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


@router.get("/derivatives", response_class=HTMLResponse, include_in_schema=False)
def derivatives_page(
    request: Request,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """One's own derivatives, their lineage and webhooks, and the form to register one."""
    services = get_services(request)
    subscriptions = [
        (s, webhooks.secret(services.secrets, s.id)) for s in webhooks.subscriptions(session, user)
    ]
    return render(
        request,
        "downstream/derivatives.html",
        {
            "derivatives": derivatives.owned_by(session, user),
            "subscriptions": subscriptions,
            "relations": RELATIONS,
        },
    )


def _register(
    request: Request,
    session: Session,
    user: User,
    registration: Registration,
    weights: UploadFile | None,
    webhook_url: str,
) -> Derivative:
    services = get_services(request)
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-derivative-"))
    try:
        path: Path | None = None
        if weights is not None and weights.filename:
            path = workdir / (Path(weights.filename).name or "weights")
            with path.open("wb") as fh:
                shutil.copyfileobj(weights.file, fh, 8 << 20)
            if path.stat().st_size == 0:
                raise InvalidInput("weights: the uploaded file is empty")
        derivative = derivatives.register(services, session, user, registration, weights=path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if webhook_url.strip():
        for base in derivative.bases:
            webhooks.subscribe(services, session, user, webhook_url, [], release=base)
    return derivative


@router.post("/derivatives", dependencies=[Depends(verify_csrf)], include_in_schema=False)
def register_page(
    request: Request,
    name: str = Form(""),
    relation: str = Form("finetune"),
    base: str = Form(""),
    url: str = Form(""),
    weights_sha256: str = Form(""),
    webhook_url: str = Form(""),
    weights: UploadFile | None = File(None),
    user: User = Depends(page_user(Permission.DERIVE)),
    session: Session = Depends(db_session),
) -> Response:
    """Register a derivative from the form (bases comma-separated for a merge)."""
    registration = Registration(name, relation, base.split(","), url, weights_sha256)
    _register(request, session, user, registration, weights, webhook_url)
    session.commit()
    return redirect("/derivatives", "saved")


@router.post("/api/v1/derivatives", tags=["downstream"])
def register_api(
    request: Request,
    name: str = Form(...),
    relation: str = Form(...),
    base: list[str] = Form(...),
    url: str = Form(""),
    weights_sha256: str = Form(""),
    webhook_url: str = Form(""),
    weights: UploadFile | None = File(None),
    user: User = Depends(api_user(Permission.DERIVE)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Register a derivative (multipart form; `weights` optional); its lineage comes back."""
    registration = Registration(name, relation, base, url, weights_sha256)
    derivative = _register(request, session, user, registration, weights, webhook_url)
    out = derivative_out(derivative)
    session.commit()
    return out


def derivative_out(derivative: Derivative) -> dict[str, Any]:
    """A derivative as the API shows it."""
    return {
        "name": derivative.name,
        "relation": derivative.relation,
        "bases": [b.ref for b in derivative.bases],
        "hosted": derivative.hosted_release.ref if derivative.hosted_release else None,
        "lineage": derivative.lineage,
        "lineage_note": derivative.lineage_note,
        "weights_sha256": derivative.weights_sha256,
        "url": derivative.url,
    }


@router.get("/account/requests", response_class=HTMLResponse, include_in_schema=False)
def my_requests(
    request: Request,
    user: User = Depends(page_user(Permission.ACCOUNT)),
    session: Session = Depends(db_session),
) -> Response:
    """One's requests, each with its timeline; reviewers also choose how they hear of new ones."""
    lifetime = get_services(request).settings.request_lifetime_days
    return render(
        request,
        "downstream/requests.html",
        {
            "timelines": request_notices.timelines(session, user, lifetime_days=lifetime),
            "reviewer": user.role in request_notices.REVIEWER_ROLES,
            "mode": request_notices.notice_mode(session, user),
            "modes": request_notices.MODES,
        },
    )


@router.post(
    "/account/review-notices", dependencies=[Depends(verify_csrf)], include_in_schema=False
)
def set_review_notices(
    mode: str = Form(""),
    user: User = Depends(page_user(Permission.REVIEW)),
    session: Session = Depends(db_session),
) -> Response:
    """Hear of new requests each time, as a daily digest, or not at all (reviewers)."""
    request_notices.set_notice_mode(session, user, mode)
    session.commit()
    return redirect("/account/requests", "saved")

"""Download links' pages and files, the distribution API, and the Hub-compatible API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ringfence.access.circles import visible_release
from ringfence.accounts.models import User
from ringfence.distribution import hub, links, manifests, sources
from ringfence.distribution import services as dist
from ringfence.errors import NotFound, RingfenceError
from ringfence.web.deps import db_session, get_services
from ringfence.web.security import Permission, api_user, client_ip
from ringfence.web.templating import templates

router = APIRouter()
router.include_router(hub.router)


def _link_base(request: Request, token: str) -> str:
    # The configured base URL, never the request's Host header: a forged Host would put a
    # link token into a URL on someone else's server (a page, a script, a mail).
    return f"{get_services(request).settings.base_url.rstrip('/')}/d/{token}"


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get("/d/{token}", response_model=None)
def link_page(request: Request, token: str, session: Session = Depends(db_session)) -> Response:
    """The link's page: the holder's files, their hashes and how to fetch them."""
    services = get_services(request)
    access = dist.open_link(session, services.secrets, token)
    listing = dist.file_listing(
        session, services, access.release, access.user, _link_base(request, token)
    )
    if _wants_json(request):
        return JSONResponse(listing)
    return templates.TemplateResponse(
        request,
        "distribution/link.html",
        {"listing": listing, "link": access.link, "page_url": _link_base(request, token)},
    )


@router.get("/d/{token}/files.json")
def link_files(request: Request, token: str, session: Session = Depends(db_session)) -> Any:
    """The holder's files as JSON (what `ringfence download URL` reads)."""
    services = get_services(request)
    access = dist.open_link(session, services.secrets, token)
    return dist.file_listing(
        session, services, access.release, access.user, _link_base(request, token)
    )


@router.get("/d/{token}/download.sh", response_class=PlainTextResponse)
def link_script(request: Request, token: str, session: Session = Depends(db_session)) -> str:
    """A script that needs only curl and sha256sum."""
    services = get_services(request)
    access = dist.open_link(session, services.secrets, token)
    listing = dist.file_listing(
        session, services, access.release, access.user, _link_base(request, token)
    )
    return dist.download_script(listing)


@router.get(f"/d/{{token}}/{manifests.SIGNATURE_NAME}")
def link_manifest(request: Request, token: str, session: Session = Depends(db_session)) -> Any:
    """The holder's signed manifest (a Sigstore bundle), once computed."""
    services = get_services(request)
    access = dist.open_link(session, services.secrets, token)
    return _manifest_response(session, access.release.id, access.user.id)


def _manifest_response(session: Session, release_id: int, user_id: int) -> Response:
    row = dist.manifest_row(session, release_id, user_id)
    if row is None or row.state != "ready" or row.bundle is None:
        state = row.state if row is not None else "not requested"
        raise NotFound(f"the manifest of your copy is not ready ({state})", hint="retry shortly")
    return Response(row.bundle, media_type="application/json")


@router.api_route("/d/{token}/f/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
def link_file(request: Request, token: str, path: str) -> Response:
    """One file of the holder's fingerprinted copy, with ranges."""
    services = get_services(request)

    def build(session: Session, send_body: bool, ip: str | None, ua: str | None) -> dist.Delivery:
        access = dist.open_link(session, services.secrets, token)
        request.state.caller = access.user.email
        return dist.prepare_delivery(
            session,
            services,
            release=access.release,
            path=path,
            user=access.user,
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
            send_body=send_body,
            link=access.link,
            via="link",
            ip=ip,
            user_agent=ua,
        )

    def refuse(exc: RingfenceError) -> Response:
        raise exc

    return hub.deliver(request, services, build, subject=f"link:{token[:12]}", refuse=refuse)


class LinkIn(BaseModel):
    """Ask for a download link for one's own grant."""

    release: str = Field(description="MODEL@VERSION")
    hours: int = links.DEFAULT_HOURS
    uses: int = links.DEFAULT_USES


@router.post("/api/v1/distribution/links")
def create_link(
    request: Request,
    body: LinkIn,
    user: User = Depends(api_user(Permission.DOWNLOAD)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """A signed link to the caller's own copy of a release."""
    services = get_services(request)
    release = visible_release(session, body.release, user)
    new = dist.create_link_for(
        session,
        services,
        release,
        user,
        actor=user.email,
        hours=body.hours,
        uses=body.uses,
        ip=client_ip(request),
    )
    # Commit before answering: db_session's own commit runs after the response is sent, so
    # a crash or a database outage then would lose a link (and its audit event) the caller
    # already holds.
    session.commit()
    return {
        "url": new.url(services.settings.base_url),
        "expires_at": new.link.expires_at.isoformat(),
        "uses": new.link.max_uses,
        "release": release.ref,
    }


@router.get("/api/v1/distribution/releases/{ref}/manifest")
def my_manifest(
    request: Request,
    ref: str,
    user: User = Depends(api_user(Permission.DOWNLOAD)),
    session: Session = Depends(db_session),
) -> Response:
    """The caller's signed manifest for a release they may download."""
    release = visible_release(session, ref, user)
    sources.authorise(session, user, release)
    return _manifest_response(session, release.id, user.id)


@router.get("/api/v1/distribution/signing-key.pem", response_class=PlainTextResponse)
def signing_key(request: Request) -> str:
    """The lab's public key for manifests (ECDSA P-256, PEM)."""
    return manifests.public_key_pem(get_services(request).secrets).decode()

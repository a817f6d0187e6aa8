"""The Hugging Face Hub-compatible API: what `huggingface_hub` and `transformers` call.

With `HF_ENDPOINT=http://HOST:PORT` and `HF_TOKEN=<a ringfence token>`, `snapshot_download`,
`hf_hub_download` and `from_pretrained("SLUG/MODEL", revision=VERSION)` work unchanged:

- `GET /api/models/{ns}/{name}[/revision/{rev}]`: model info with `sha` and `siblings`;
- `GET /api/models/{ns}/{name}/tree/{rev}[/{path}]`: the file tree (one page);
- `HEAD|GET /{ns}/{name}/resolve/{rev}/{path}`: the caller's fingerprinted file with
  `X-Repo-Commit`, `ETag`, `X-Linked-Size`, `Content-Length` and ranges.

A release with a finished gate run also lists and serves its README.md model card with the
Hub's metadata block (`distribution.card`), to exactly those who may fetch its other files.

Errors carry the Hub's `X-Error-Code` (GatedRepo, RepoNotFound, RevisionNotFound,
EntryNotFound) so the client raises its own matching exception: a caller without a usable
grant gets the gated-repository answer and `GatedRepoError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from ringfence.access.circles import visible
from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.db import transaction
from ringfence.distribution import sending, sources
from ringfence.distribution import services as dist
from ringfence.distribution.card import PATH as CARD_PATH
from ringfence.distribution.card import Card, CardDelivery, card_of, commit_for, prepare_card
from ringfence.distribution.ranges import RangeNotSatisfiable
from ringfence.errors import (
    AuthenticationRequired,
    NotFound,
    PermissionDenied,
    RingfenceError,
)
from ringfence.operations import metrics
from ringfence.web.deps import get_services
from ringfence.web.headers import header_value
from ringfence.web.security import (
    Permission,
    TokenCaller,
    caller_name,
    check_permission,
    client_ip,
    token_caller,
)
from ringfence.wiring import Services

router = APIRouter(include_in_schema=False)


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit

    def response(self) -> Response:
        headers = {"X-Error-Message": header_value(self.message)}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _caller(request: Request, session: Session) -> TokenCaller | None:
    # The one identity of every API (ringfence.web.security): tokens only.
    try:
        return token_caller(request, session)
    except AuthenticationRequired as exc:
        # The Hub's own wording: huggingface_hub then says "invalid credentials".
        raise _HubError(401, None, "Invalid credentials in Authorization header") from exc


def _permit(caller: TokenCaller | None, permission: Permission) -> User | None:
    # Checked after the repository is found: a hidden repository is "not found" to outsiders
    # whatever their token, and only then does the token's scope matter.
    if caller is None:
        return None
    try:
        check_permission(caller.user, permission, token_scope=caller.scope)
    except PermissionDenied as exc:
        raise _HubError(403, None, exc.diagnostics()) from exc
    return caller.user


def _translate(exc: RingfenceError, repo: str, commit: str | None = None) -> _HubError:
    if isinstance(exc, dist.RevisionNotFound):
        return _HubError(404, "RevisionNotFound", exc.diagnostics())
    if isinstance(exc, RangeNotSatisfiable):
        return _HubError(416, None, exc.diagnostics())
    if isinstance(exc, NotFound):
        return _HubError(404, "EntryNotFound", exc.diagnostics(), commit)
    if isinstance(exc, AuthenticationRequired):
        return _HubError(
            401,
            "GatedRepo",
            f"Access to model {repo} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in.",
        )
    if isinstance(exc, PermissionDenied):
        return _HubError(
            403,
            "GatedRepo",
            f"Access to model {repo} is restricted and you are not in the authorized list: "
            f"{exc.diagnostics()}",
        )
    return _HubError(exc.http_status, None, exc.diagnostics())


def _release(
    session: Session, services: Services, ns: str, name: str, revision: str, user: User | None
) -> tuple[Release, Card | None]:
    # The release with its model card (made once per request: a commit names both).
    cards: dict[int, Card | None] = {}

    def card(release: Release) -> Card | None:
        if release.id not in cards:
            cards[release.id] = card_of(session, services, release)
        return cards[release.id]

    def card_oid(release: Release) -> str | None:
        found = card(release)
        return found.oid if found else None

    try:
        release = dist.hub_release(
            session, services.secrets, ns, name, revision, user, card=card_oid
        )
    except dist.RevisionNotFound:
        raise
    except NotFound as exc:
        raise _HubError(404, "RepoNotFound", f"Repository Not Found: {ns}/{name}") from exc
    if not visible(session, release, user):
        # In-house and partner releases do not exist for outsiders: the same answer as an
        # unknown name, so a token holder cannot probe which models the lab keeps.
        raise _HubError(404, "RepoNotFound", f"Repository Not Found: {ns}/{name}")
    return release, card(release)


def _model_info(
    services: Services,
    session: Session,
    release: Release,
    card: Card | None,
    user: User,
    blobs: bool,
) -> dict[str, Any]:
    repo = f"{release.model.organisation.slug}/{release.model.name}"
    manifest = dist.manifest_row(session, release.id, user.id)
    ready = manifest is not None and manifest.state == "ready"
    siblings: list[dict[str, Any]] = []
    for a in release.artifacts:
        if card is not None and a.path == CARD_PATH:
            continue  # the card takes the published README.md's place
        sibling: dict[str, Any] = {"rfilename": a.path}
        if blobs:
            sibling["size"] = a.size
            tag = dist.etag_of(manifest, services.secrets, release, a, user.id)
            sibling["blobId"] = tag[:40]
            if ready:
                sibling["lfs"] = {"size": a.size, "sha256": tag, "pointerSize": 134}
        siblings.append(sibling)
    if card is not None:
        # A small file kept in git on the Hub: its blob id, and no LFS pointer.
        siblings.append(
            {"rfilename": CARD_PATH, "size": card.size, "blobId": card.oid}
            if blobs
            else {"rfilename": CARD_PATH}
        )
    created = release.created_at.isoformat().replace("+00:00", "Z")
    return {
        "_id": f"{release.id:024x}",
        "id": repo,
        "modelId": repo,
        "author": release.model.organisation.slug,
        "sha": commit_for(services, release, user.id, card),
        "lastModified": created,
        "createdAt": created,
        "private": False,
        "gated": "manual",
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": ["ringfence", f"circle:{release.circle}"],
        "library_name": "transformers",
        "siblings": siblings,
        "usedStorage": release.total_size,
    }


def _info(request: Request, ns: str, name: str, revision: str) -> Response:
    services = get_services(request)
    repo = f"{ns}/{name}"
    try:
        with transaction(services.sessions) as session:
            caller = _caller(request, session)
            user = caller.user if caller else None
            release, card = _release(session, services, ns, name, revision, user)
            _permit(caller, Permission.BROWSE)
            try:
                sources.authorise(session, user, release)
            except RingfenceError as exc:
                raise _translate(exc, repo) from exc
            blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
            assert user is not None  # authorise refuses anonymous callers
            return JSONResponse(_model_info(services, session, release, card, user, blobs))
    except _HubError as exc:
        return exc.response()
    except RingfenceError as exc:
        return _translate(exc, repo).response()


@router.get("/api/models/{ns}/{name}")
def model_info(request: Request, ns: str, name: str) -> Response:
    """Model info at the newest release ("main")."""
    return _info(request, ns, name, "main")


@router.get("/api/models/{ns}/{name}/revision/{revision}")
def model_info_at(request: Request, ns: str, name: str, revision: str) -> Response:
    """Model info at a revision: a release version or the caller's commit hash."""
    return _info(request, ns, name, revision)


def _tree_entries(
    services: Services,
    session: Session,
    release: Release,
    card: Card | None,
    user: User,
    prefix: str,
    recursive: bool,
) -> list[dict[str, Any]]:
    manifest = dist.manifest_row(session, release.id, user.id)
    ready = manifest is not None and manifest.state == "ready"
    base = prefix.strip("/")
    entries: dict[str, dict[str, Any]] = {}
    for a in release.artifacts:
        if base and not a.path.startswith(base + "/"):
            continue
        rest = a.path[len(base) + 1 :] if base else a.path
        parts = rest.split("/")
        # Folders on the way down, like the Hub lists them.
        for depth in range(1, len(parts)):
            if not recursive and depth > 1:
                break
            folder = "/".join(([base] if base else []) + parts[:depth])
            entries.setdefault(folder, {"type": "directory", "oid": "0" * 40, "path": folder})
        if not recursive and len(parts) > 1:
            continue
        tag = dist.etag_of(manifest, services.secrets, release, a, user.id)
        entry: dict[str, Any] = {"type": "file", "oid": tag[:40], "size": a.size, "path": a.path}
        if ready:
            entry["lfs"] = {"oid": tag, "size": a.size, "pointerSize": 134}
        entries[a.path] = entry
    if card is not None and not base:
        # At the root, in the published README.md's place if there was one: no LFS pointer.
        entries[CARD_PATH] = {"type": "file", "oid": card.oid, "size": card.size, "path": CARD_PATH}
    return [entries[k] for k in sorted(entries)]


@router.get("/api/models/{ns}/{name}/tree/{revision}")
@router.get("/api/models/{ns}/{name}/tree/{revision}/{path:path}")
def tree(request: Request, ns: str, name: str, revision: str, path: str = "") -> Response:
    """The files of the caller's copy at a revision (all in one page)."""
    services = get_services(request)
    repo = f"{ns}/{name}"
    recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
    try:
        with transaction(services.sessions) as session:
            caller = _caller(request, session)
            user = caller.user if caller else None
            release, card = _release(session, services, ns, name, revision, user)
            _permit(caller, Permission.BROWSE)
            try:
                sources.authorise(session, user, release)
            except RingfenceError as exc:
                raise _translate(exc, repo) from exc
            assert user is not None
            entries = _tree_entries(services, session, release, card, user, path, recursive)
            return JSONResponse(entries)
    except _HubError as exc:
        return exc.response()
    except RingfenceError as exc:
        return _translate(exc, repo).response()


def _stream(services: Services, delivery: dist.Delivery) -> AsyncIterator[bytes]:
    # The chunks are made in the thread pool, off the event loop, one ahead of the socket.
    r = delivery.byte_range
    return sources.sent_bytes(
        services, delivery.release, delivery.artifact, delivery.recipient, r.start, r.end
    )


def _in_transaction(
    services: Services, build: DeliveryBuilder, send_body: bool, ip: str | None, ua: str | None
) -> dist.Delivery | CardDelivery:
    # The decision and its audit event commit together (audit.record serialises writers).
    with transaction(services.sessions) as session:
        return build(session, send_body, ip, ua)


#: builds the delivery inside the request's transaction: (session, send_body, ip, user agent)
DeliveryBuilder = Callable[[Session, bool, str | None, str | None], dist.Delivery | CardDelivery]


def deliver(
    request: Request,
    services: Services,
    build: DeliveryBuilder,
    *,
    subject: str,
    refuse: Callable[[RingfenceError], Response],
) -> Response:
    """Run `build(session) -> Delivery` in one transaction, then send the bytes outside it.

    Plain files go by the file-sending path (`sending`), fingerprinted ones stream, the model
    card (a few KiB made in the request) goes as one body.
    """
    send_body = request.method == "GET"
    ip = client_ip(request)
    ua = request.headers.get("user-agent")
    try:
        delivery = _in_transaction(services, build, send_body, ip, ua)
    except (PermissionDenied, AuthenticationRequired, _HubError) as exc:
        if send_body:
            # Refusals name the caller whenever the request proved who it is.
            dist.record_refusal(
                services,
                subject=subject,
                reason=exc.message if isinstance(exc, _HubError) else exc.diagnostics(),
                actor=caller_name(request),
                ip=ip,
                user_agent=ua,
            )
        return exc.response() if isinstance(exc, _HubError) else refuse(exc)
    except RingfenceError as exc:
        return refuse(exc)
    headers = delivery.headers()
    status = 206 if delivery.byte_range.partial else 200
    if not send_body:
        return Response(status_code=status, headers=headers)
    if isinstance(delivery, CardDelivery):
        return Response(delivery.content(), status_code=status, headers=headers)
    plain = sources.plain_file(services, delivery.release, delivery.artifact)
    if plain is not None:
        # The file-sending path (sendfile, or nginx) reports no chunks back: count the range
        # when it is handed over.
        metrics.DOWNLOAD_BYTES.labels("plain").inc(delivery.byte_range.length)
        return sending.plain_file_response(
            plain,
            delivery.byte_range,
            headers,
            accel_prefix=services.settings.accel_redirect,
            blob_dir=services.settings.blob_dir,
        )
    return StreamingResponse(
        _stream(services, delivery),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


@router.api_route(
    "/{ns}/{name}/resolve/{revision}/{path:path}",
    methods=["GET", "HEAD"],
    include_in_schema=False,  # a byte stream for Hub clients; GET and HEAD share one handler
)
def resolve(request: Request, ns: str, name: str, revision: str, path: str) -> Response:
    """One file of the caller's fingerprinted copy (HEAD for metadata, GET with ranges)."""
    services = get_services(request)
    repo = f"{ns}/{name}"
    commit: list[str] = []

    def build(
        session: Session, send_body: bool, ip: str | None, ua: str | None
    ) -> dist.Delivery | CardDelivery:
        caller = _caller(request, session)
        user = caller.user if caller else None
        release, card = _release(session, services, ns, name, revision, user)
        user = _permit(caller, Permission.DOWNLOAD)
        if user is not None:
            commit.append(commit_for(services, release, user.id, card))
        if card is not None and path == CARD_PATH:
            return prepare_card(
                session,
                services,
                release=release,
                card=card,
                user=user,
                range_header=request.headers.get("range"),
                if_range=request.headers.get("if-range"),
                send_body=send_body,
                ip=ip,
                user_agent=ua,
            )
        return dist.prepare_delivery(
            session,
            services,
            release=release,
            path=path,
            user=user,
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
            send_body=send_body,
            via="hub",
            ip=ip,
            user_agent=ua,
            card=card.oid if card else None,  # every file is at the commit naming the card
        )

    def refuse(exc: RingfenceError) -> Response:
        return _translate(exc, repo, commit[0] if commit else None).response()

    try:
        return deliver(request, services, build, subject=f"repo:{repo}", refuse=refuse)
    except _HubError as exc:
        return exc.response()

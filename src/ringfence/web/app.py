"""The web application: HTML pages and the JSON API under /api/v1, over the business areas."""

from __future__ import annotations

import importlib
import logging
import re
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError as DBDataError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringfence import __version__
from ringfence.datadir import restrict_umask
from ringfence.db import database_error
from ringfence.errors import (
    AuthenticationRequired,
    DatabaseUnavailable,
    RingfenceError,
    TwoFactorRequired,
)
from ringfence.operations.logs import current_request_id
from ringfence.web.access_log import redact_access_log
from ringfence.web.admission import RETRY_AFTER_S, AdmissionLimit
from ringfence.web.headers import SecurityHeaders, header_value
from ringfence.web.security import login_redirect
from ringfence.web.telemetry import RequestTelemetry
from ringfence.web.templating import templates
from ringfence.wiring import Services, build

log = logging.getLogger("ringfence.web")

#: areas whose `views.router` is mounted when the module exists
AREAS = (
    "catalogue",
    "accounts",
    "organisations",
    "mail",
    "access",
    "audit",
    "fingerprint",
    "distribution",
    "tracing",
    "jobs",
    "incidents",
    "gates",
    "operations",
    "downstream",
    "webhooks",
    "hosted",
)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.url.path.startswith(("/api/", "/v1/")) or (
        "application/json" in accept and "text/html" not in accept
    )


def error_response(request: Request, status: int, message: str, kind: str) -> Response:
    """One rendering of every error: JSON for the API, a page for people."""
    if request.url.path.startswith("/v1/"):
        # The inference endpoint answers in OpenAI's error shape, which its clients read.
        from ringfence.hosted.protocol import error_body

        return JSONResponse(error_body(status, message, kind), status_code=status)
    if _wants_json(request):
        return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


#: a client's X-Request-ID is reused only when it cannot smuggle anything into a log line
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def request_id(request: Request) -> str:
    """The id of this request, as sent back in X-Request-ID and written in the log."""
    return str(request.scope.get("state", {}).get("request_id", ""))


def _unexpected_response(request: Request, rid: str) -> Response:
    message = f"internal error: the server logged the details (request id {rid})"
    try:
        return error_response(request, 500, message, "InternalError")
    except Exception:  # the error page itself may need what just broke (the database)
        log.exception("the error page failed too (request id %s)", rid)
        return PlainTextResponse(message, status_code=500)


class RequestIds:
    """Gives every request an id (X-Request-ID) and turns an unexpected error into one line.

    Pure ASGI like SecurityHeaders. An error before the response started is logged with the
    id and its traceback, and the caller reads one line carrying the id, never a traceback;
    an error mid-stream can only be logged (the connection is then cut). While the request
    runs, the id is also in `current_request_id`, where the JSON log formatter reads it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Request(scope).headers.get("x-request-id", "")
        rid = given if _CLIENT_REQUEST_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        reset = current_request_id.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            request = Request(scope)
            log.exception(
                "unhandled error on %s %s (request id %s)",
                request.method,
                header_value(request.url.path, 200),
                rid,
                extra={"request_id": rid},
            )
            if started:
                raise
            await _unexpected_response(request, rid)(scope, receive, send_with_id)
        finally:
            current_request_id.reset(reset)


def create_app(services: Services | None = None) -> FastAPI:
    """The ASGI app bound to `services` (default: from the environment, schema migrated)."""
    restrict_umask()  # what the server writes in its data dir is its own (see datadir)
    redact_access_log()
    if services is None:
        services = build()
        services.prepare()
    app = FastAPI(
        title="ringfence",
        version=__version__,
        description="Release model weights to the right people, and know whose copy leaked.",
        docs_url="/api/v1/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.services = services
    if services.settings.dev_outbox:
        log.warning(
            "the development outbox is ON (RINGFENCE_DEV_OUTBOX): mails are not sent, and "
            "every admin can read every mail, password-reset links included, at /outbox; "
            "never run a real deployment like this"
        )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(RingfenceError)
    async def _ringfence_error(request: Request, exc: RingfenceError) -> Response:
        if isinstance(exc, AuthenticationRequired) and not _wants_json(request):
            # A person's browser goes to sign in, then comes back to the page.
            return login_redirect(request)
        if isinstance(exc, TwoFactorRequired) and not _wants_json(request):
            return RedirectResponse("/account/two-factor", status_code=303)
        return error_response(request, exc.http_status, exc.diagnostics(), type(exc).__name__)

    @app.exception_handler(DBDataError)
    async def _refused_by_database(request: Request, exc: DBDataError) -> Response:
        # The database refused a value the request carried (PostgreSQL: a NUL character in a
        # text field, a number out of its column's range); the transaction was rolled back.
        log.info("the database refused a value on %s: %s", request.url.path, exc.orig)
        message = (
            "a value in the request cannot be stored or searched (a NUL character, or a "
            "number out of range): check the request's fields"
        )
        return error_response(request, 400, message, "InvalidInput")

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> Response:
        # The database restarting or out of reach is operations trouble, not a bug: the caller
        # reads a 503 it may retry, the log one line (no traceback), and the pool's pre-ping
        # reconnects by itself once the database is back.
        error = database_error(exc, services.settings.resolved_database_url)
        assert error is not None  # every OperationalError maps to DatabaseUnavailable
        log.warning(
            "database unavailable on %s %s (request id %s): %s",
            request.method,
            header_value(request.url.path, 200),
            request_id(request),
            error.message,
        )
        # The error page's navigation would ask the same database who is signed in.
        request.state.account = None
        return error_response(request, error.http_status, error.diagnostics(), type(error).__name__)

    @app.exception_handler(DBIntegrityError)
    async def _concurrent_write(request: Request, exc: DBIntegrityError) -> Response:
        # Two requests racing to create the same record (a double-clicked form): the loser's
        # transaction rolled back and its caller reads a one-line 409, not a 500.
        log.info("the database refused a write on %s: %s", request.url.path, exc.orig)
        error = database_error(exc, None)
        assert error is not None  # every IntegrityError maps to Conflict
        request.state.account = None
        return error_response(request, error.http_status, error.diagnostics(), type(error).__name__)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> Response:
        # No pooled connection came free within the pool's short timeout: the caller may
        # retry in a moment, as after a 429.
        log.warning(
            "no database connection free on %s %s (request id %s)",
            request.method,
            header_value(request.url.path, 200),
            request_id(request),
        )
        request.state.account = None
        error = DatabaseUnavailable(
            "the server is busy: no database connection came free in time", hint="retry shortly"
        )
        response = error_response(
            request, error.http_status, error.diagnostics(), type(error).__name__
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(request, exc.status_code, str(exc.detail), "HTTPError")
        for key, value in (exc.headers or {}).items():
            response.headers[key] = header_value(value)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid value')}" if where else "invalid request"
        return error_response(request, 422, message, "InvalidInput")

    for area in AREAS:
        try:
            module = importlib.import_module(f"ringfence.{area}.views")
        except ModuleNotFoundError as exc:
            if exc.name != f"ringfence.{area}.views":
                raise
            continue
        app.include_router(module.router)
    # Outermost last: security headers land on everything, the error answers included;
    # telemetry counts the 500 that RequestIds makes of an unexpected error, and the 503 of
    # the admission limit.
    app.add_middleware(RequestIds)
    # Inside telemetry and the headers: a refused request is counted and carries them too.
    settings = services.settings
    app.add_middleware(AdmissionLimit, in_flight=settings.max_in_flight, queued=settings.max_queued)
    app.add_middleware(RequestTelemetry)
    app.add_middleware(SecurityHeaders, https=services.settings.base_url.startswith("https://"))
    return app


def worker_app() -> FastAPI:
    """The app of one of several server processes (`ringfence serve --workers N`).

    Built from the environment without migrating: the parent migrated before it started the
    workers, and N processes running Alembic at once would race.
    """
    return create_app(build())

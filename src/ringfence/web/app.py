"""The web application: HTML pages and the JSON API under /api/v1, over the business areas."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ringfence import __version__
from ringfence.errors import AuthenticationRequired, RingfenceError
from ringfence.web.security import login_redirect
from ringfence.web.templating import templates
from ringfence.wiring import Services, build

log = logging.getLogger("ringfence.web")

#: areas whose `views.router` is mounted when the module exists
AREAS = ("catalogue", "access", "audit", "fingerprint", "distribution", "tracing")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def error_response(request: Request, status: int, message: str, kind: str) -> Response:
    """One rendering of every error: JSON for the API, a page for people."""
    if _wants_json(request):
        return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def create_app(services: Services | None = None) -> FastAPI:
    """The ASGI app bound to `services` (default: from the environment, schema migrated)."""
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
        return error_response(request, exc.http_status, exc.diagnostics(), type(exc).__name__)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(request, exc.status_code, str(exc.detail), "HTTPError")
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid value')}" if where else "invalid request"
        return error_response(request, 422, message, "InvalidInput")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "internal error: the server logged the details", "InternalError"
        )

    for area in AREAS:
        try:
            module = importlib.import_module(f"ringfence.{area}.views")
        except ModuleNotFoundError as exc:
            if exc.name != f"ringfence.{area}.views":
                raise
            continue
        app.include_router(module.router)
    return app

"""Every request counted, timed and written as one access record: pure ASGI, like RequestIds.

Pure ASGI because downloads stream gigabytes: the body passes through untouched and the
request is timed to its last byte. It runs outside `RequestIds`, so the 500 that turns an
unexpected error into one line is counted too, and reads what the inner layers left in the
scope: the request id, the route that matched (`scope["route"]`, set by the router) and the
caller (`request.state.account`, set by `ringfence.web.security`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringfence.operations import metrics
from ringfence.web.access_log import redact
from ringfence.web.headers import header_value

log = logging.getLogger("ringfence.access")

#: methods that keep their own label; anything else is "other" (a label per invented verb
#: would let any client grow the metrics without bound)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the route label of a request no route matched (a 404 of the router itself)
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that served this request (`/d/{token}`), never its path."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _user_id(state: dict[str, Any]) -> int | None:
    account = state.get("account")
    user_id = getattr(account, "id", None)
    return user_id if isinstance(user_id, int) else None


class RequestTelemetry:
    """Counts and times each HTTP request by route template, and logs one access record."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app sends nothing at all

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = route_template(scope)
        metrics.HTTP_REQUESTS.labels(route, method, f"{status // 100}xx").inc()
        metrics.HTTP_LATENCY.labels(route, method).observe(seconds)
        if not log.isEnabledFor(logging.INFO):
            return
        state = scope.get("state", {})
        path = redact(header_value(scope.get("path", ""), 300))
        client = scope.get("client")
        log.info(
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "request_id": state.get("request_id", ""),
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "user_id": _user_id(state),
                "client": client[0] if client else None,
            },
        )

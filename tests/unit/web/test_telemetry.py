"""The request id reaches code running inside the request, and routes are counted by template."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from ringfence.operations.logs import current_request_id
from ringfence.web.app import RequestIds
from ringfence.web.telemetry import UNMATCHED, RequestTelemetry, route_template


def test_the_request_id_is_in_the_context_while_the_request_runs() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(current_request_id.get())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(RequestIds(app))  # no lifespan: a bare ASGI app
    given = client.get("/", headers={"X-Request-ID": "from-the-proxy-1"})
    made = client.get("/")
    assert seen == ["from-the-proxy-1", made.headers["x-request-id"]]
    assert given.headers["x-request-id"] == "from-the-proxy-1"
    assert current_request_id.get() == ""  # nothing leaks past the request


def test_the_route_label_is_the_template() -> None:
    app = FastAPI()
    templates: list[str] = []

    @app.get("/d/{token}/f/{path:path}")
    def file(token: str, path: str) -> dict[str, str]:
        return {}

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await RequestTelemetry(app)(scope, receive, send)
        if scope["type"] == "http":
            templates.append(route_template(scope))

    with TestClient(outer) as client:
        client.get("/d/SECRETTOKEN/f/model.safetensors")
        client.get("/nowhere/SECRETTOKEN")
    assert templates == ["/d/{token}/f/{path:path}", UNMATCHED]

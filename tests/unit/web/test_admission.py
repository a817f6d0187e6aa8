"""The admission limit runs a bounded number of requests, queues some, refuses the rest."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from ringfence.web.admission import AdmissionLimit


class Gated:
    """An ASGI app whose requests wait for their gate, once they started (to count them)."""

    def __init__(self, *, start_first: bool = False) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.start_first = start_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"]
        self.started.append(name)
        gate = self.gates.setdefault(name, asyncio.Event())
        if self.start_first:  # a download: the response starts, then the body takes long
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await gate.wait()
        if not self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    await app(scope, receive, send)
    return sent


async def _settle() -> None:
    for _ in range(20):  # let every ready task run up to its next wait
        await asyncio.sleep(0)


def _status(sent: list[Message]) -> int:
    return int(sent[0]["status"])


def test_beyond_the_queue_a_request_is_refused_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        inner = Gated()
        app = AdmissionLimit(inner, in_flight=1, queued=1)
        first = asyncio.create_task(_call(app, "/api/a"))
        second = asyncio.create_task(_call(app, "/api/b"))
        await _settle()
        assert inner.started == ["/api/a"]  # b waits its turn, running nothing
        refused = await _call(app, "/api/c")  # returns without any gate opening
        assert _status(refused) == 503
        headers = dict(refused[0]["headers"])
        assert headers[b"retry-after"] == b"1"
        assert json.loads(refused[1]["body"])["error"]["type"] == "ServerBusy"
        assert inner.started == ["/api/a"]
        inner.gates["/api/a"].set()
        assert _status(await first) == 200
        await _settle()
        assert inner.started == ["/api/a", "/api/b"]  # the slot passed to the next in line
        inner.gates["/api/b"].set()
        assert _status(await second) == 200
        assert app._running == 0 and not app._waiters

    asyncio.run(scenario())


def test_a_started_response_leaves_its_slot() -> None:
    async def scenario() -> None:
        inner = Gated(start_first=True)
        app = AdmissionLimit(inner, in_flight=1, queued=0)
        download = asyncio.create_task(_call(app, "/download"))
        await _settle()
        # The download's bytes still flow, yet the next request is let in, not refused.
        meta = asyncio.create_task(_call(app, "/meta"))
        await _settle()
        assert inner.started == ["/download", "/meta"]
        inner.gates["/meta"].set()
        inner.gates["/download"].set()
        assert _status(await meta) == 200 and _status(await download) == 200
        assert app._running == 0

    asyncio.run(scenario())


def test_a_client_that_leaves_the_queue_takes_no_slot_with_it() -> None:
    async def scenario() -> None:
        inner = Gated()
        app = AdmissionLimit(inner, in_flight=1, queued=2)
        first = asyncio.create_task(_call(app, "/a"))
        gone = asyncio.create_task(_call(app, "/gone"))
        last = asyncio.create_task(_call(app, "/last"))
        await _settle()
        gone.cancel()
        await _settle()
        inner.gates["/a"].set()
        await first
        await _settle()
        assert inner.started == ["/a", "/last"]
        inner.gates["/last"].set()
        assert _status(await last) == 200
        assert gone.cancelled() and app._running == 0 and not app._waiters

    asyncio.run(scenario())


def test_websockets_and_lifespan_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    app = AdmissionLimit(inner, in_flight=0, queued=0)

    async def nothing() -> Message:
        return {}

    async def drop(message: Message) -> None:
        return None

    asyncio.run(app({"type": "lifespan"}, nothing, drop))
    assert seen == ["lifespan"]

"""Admission control: a worker starts no more requests than its database pool can serve.

Without it, a burst of clients starves the pool: every request takes a pooled connection in
its first sync step (the token lookup) and then waits for a thread-pool slot for the next,
while the slots are held by requests waiting for a connection; nothing moves until the
pool's timeout breaks the knot, 30 s later, with errors. Here at most `in_flight` requests
run at once (the pool holds that many connections, plus overflow for a session's teardown);
up to `queued` more wait their turn in the event loop, where waiting costs no thread and no
connection; beyond that a request is answered at once with 503 and `Retry-After`, which
HTTP clients (huggingface_hub included) retry.

A request leaves its slot when its response starts: a download streams its bytes after its
transaction closed, so a long download never holds a slot that a metadata call needs.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: seconds a refused client is asked to wait before it tries again
RETRY_AFTER_S = 1


class AdmissionLimit:
    """Pure ASGI: run at most `in_flight` requests, queue `queued`, refuse the rest with 503."""

    def __init__(self, app: ASGIApp, *, in_flight: int, queued: int) -> None:
        self.app = app
        self.in_flight = in_flight
        self.queued = queued
        self._running = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not await self._enter():
            await _refuse(scope, send)
            return
        held = True

        def leave() -> None:
            nonlocal held
            if held:
                held = False
                self._leave()

        async def send_and_leave(message: Message) -> None:
            if message["type"] == "http.response.start":
                leave()
            await send(message)

        try:
            await self.app(scope, receive, send_and_leave)
        finally:
            leave()

    async def _enter(self) -> bool:
        # First come, first served; False when the queue is full.
        if self._running < self.in_flight and not self._waiters:
            self._running += 1
            return True
        if len(self._waiters) >= self.queued:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _leave hands its slot over: _running already counts this request
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._leave()  # handed a slot just as the client went away: pass it on
            raise
        return True

    def _leave(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the next in line
                return
        self._running -= 1


async def _refuse(scope: Scope, send: Send) -> None:
    # One line, no template, no database: refusing must cost next to nothing.
    message = "the server is busy: too many requests at once; retry shortly"
    if scope.get("path", "").startswith("/api/"):
        body = json.dumps({"error": {"type": "ServerBusy", "message": message}}).encode()
        kind = b"application/json"
    else:
        body, kind = message.encode() + b"\n", b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
        (b"x-error-message", message.encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})

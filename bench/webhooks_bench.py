"""Webhook delivery from the durable queue against plain POSTs of the same bodies.

`deliver_due` does more than the baseline on purpose: it claims each due row in the database
(so two workers never send one message twice), signs it (Standard Webhooks, HMAC-SHA256),
posts it, and records the outcome in a transaction of its own. The baseline posts the same
bodies to the same loopback receiver over one httpx client and records nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import ratio_row

TITLE = "Webhooks: delivering from the durable queue"
SECTION = "webhooks"
MESSAGES = 300
GOAL = 4.0


class _Quiet(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def run() -> list[dict[str, Any]]:
    """One row: seconds to deliver MESSAGES queued messages, as a ratio to plain POSTs."""
    import httpx
    from sqlalchemy import insert
    from tests.fixtures_access import make_user

    from ringfence.db import transaction, utcnow
    from ringfence.settings import Settings
    from ringfence.webhooks import services as webhooks
    from ringfence.webhooks.models import Delivery, Subscription
    from ringfence.wiring import build

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    home = Path(tempfile.mkdtemp(prefix="ringfence-bench-webhooks-"))
    try:
        services = build(Settings(home=home))
        services.prepare()
        body = (
            '{"data":{"from":"research","release":"bench@1.0","to":"partners"},'
            '"type":"circle.changed"}'
        )
        now = utcnow()
        with transaction(services.sessions) as session:
            admin = make_user(session, "admin@lab.example", role="admin", two_factor=False)
            subscription = Subscription(owner_id=admin.id, url=url, events=["circle.changed"])
            session.add(subscription)
            session.flush()
            session.execute(
                insert(Delivery),
                [
                    {
                        "subscription_id": subscription.id,
                        "message_id": f"msg_bench{i:06d}",
                        "event": "circle.changed",
                        "body": body,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "last_error": "",
                        "created_at": now,
                    }
                    for i in range(MESSAGES)
                ],
            )
        started = time.perf_counter()
        sent = 0
        while sent < MESSAGES:
            delivered = webhooks.deliver_due(services, utcnow())
            if delivered == 0:
                raise RuntimeError("deliveries stopped before all were sent")
            sent += delivered
        queued = time.perf_counter() - started

        started = time.perf_counter()
        with httpx.Client(timeout=10.0) as client:
            for _ in range(MESSAGES):
                client.post(
                    url, content=body.encode(), headers={"content-type": "application/json"}
                )
        plain = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(home, ignore_errors=True)
    return [
        ratio_row(
            SECTION,
            f"{MESSAGES} queued messages delivered (claim, sign, post, record; SQLite)",
            queued,
            "s",
            f"{MESSAGES} plain POSTs of the same bodies (one client, nothing recorded)",
            plain,
            higher_is_better=False,
            goal=GOAL,
            note="per message: one claim UPDATE, an HMAC-SHA256, one POST, one commit",
        )
    ]

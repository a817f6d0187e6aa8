"""Webhook signatures are the Standard Webhooks ones: the specification's own example, and
what a message may carry (counts and circles, never people)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ringfence.audit.models import AuditEvent
from ringfence.webhooks.events import message_body
from ringfence.webhooks.services import backoff, sign


def test_the_specification_example() -> None:
    # The example in the Standard Webhooks specification (and Svix's documentation).
    headers = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, UTC),
        '{"test": 2432232314}',
    )
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_message_names_no_one() -> None:
    event = AuditEvent(
        seq=7,
        tag="access:request:approved",
        actor="rev@lab.example",
        subject="release:tiny@1.0",
        payload={"request_id": 3, "user": "ada@uni.example", "reason": "ok"},
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    body = message_body("access.approved", event, "tiny@1.0")
    assert json.loads(body) == {
        "type": "access.approved",
        "timestamp": "2030-01-01T00:00:00+00:00",
        "data": {"request_id": 3, "release": "tiny@1.0", "audit_seq": 7},
    }
    trace = AuditEvent(
        seq=8,
        tag="tracing:trace:run",
        actor="admin@lab.example",
        subject="release:tiny@1.0",
        payload={"accused": [{"recipient": "ada@uni.example"}], "exact_match": True},
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert "ada@" not in message_body("trace.completed", trace, "tiny@1.0")


def test_backoff_doubles() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]

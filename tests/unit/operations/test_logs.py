"""JSON log lines: one object per record, with the request id and no secret from a URL."""

from __future__ import annotations

import json
import logging
import sys

from ringfence.operations.logs import JsonFormatter, current_request_id

LINK_TOKEN = "rfl_SECRETLINKTOKEN1234"


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ringfence.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_object_with_the_request_id() -> None:
    reset = current_request_id.set("req-42")
    try:
        line = JsonFormatter().format(_record("served %s", "x", status=200, route="/d/{token}"))
    finally:
        current_request_id.reset(reset)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "served x"
    assert entry["level"] == "warning"
    assert entry["logger"] == "ringfence.test"
    assert entry["request_id"] == "req-42"
    assert entry["status"] == 200 and entry["route"] == "/d/{token}"
    assert entry["time"].endswith("+00:00")


def test_outside_a_request_there_is_no_request_id() -> None:
    assert "request_id" not in json.loads(JsonFormatter().format(_record("idle")))


def test_link_tokens_and_token_parameters_never_reach_a_line() -> None:
    record = _record(
        'GET /d/%s/f/model.safetensors and "GET /verify?token=%s" failed',
        LINK_TOKEN,
        "PASSWORDRESETSECRET",
    )
    line = JsonFormatter().format(record)
    assert LINK_TOKEN not in line and "PASSWORDRESETSECRET" not in line
    assert "/d/[redacted]/f/model.safetensors" in json.loads(line)["message"]


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError(f"bad link /d/{LINK_TOKEN}")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "ValueError" in entry["exception"]
    assert LINK_TOKEN not in line

"""Structured logs: one JSON object per line, carrying the id of the request being served.

`RINGFENCE_LOG_FORMAT=json` chooses them (`text`, the default, is for a person at a
terminal). The request id is the one `ringfence.web.app.RequestIds` sends back in
X-Request-ID; it reaches every record written while the request runs through a contextvar,
threads included (Starlette copies the context into its thread pool).

Every message passes through the access log's redaction: a link token or a `token=` value
never reaches a log line, whoever wrote it.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from ringfence.web.access_log import redact

#: the id of the request this code runs for ("" outside a request)
current_request_id: ContextVar[str] = ContextVar("ringfence_request_id", default="")

#: what an access record adds to a line (`extra=` of the logging call)
ACCESS_FIELDS = ("method", "route", "path", "status", "duration_ms", "user_id", "client")


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, request id, access fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (secrets in the message redacted)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", "") or current_request_id.get()
        if request_id:
            line["request_id"] = request_id
        for field in ACCESS_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        return json.dumps(line, default=str)


def uvicorn_log_config(log_format: str) -> dict[str, Any]:
    """The `log_config` to start uvicorn with: its own default for text, JSON lines for json.

    In JSON mode uvicorn's access log is off: `ringfence.access` writes one record per
    request instead, with the route template, duration, user id and request id.
    """
    from uvicorn.config import LOGGING_CONFIG

    if log_format != "json":
        return LOGGING_CONFIG
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }

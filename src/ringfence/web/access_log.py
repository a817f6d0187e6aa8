"""The access log never holds a secret from a URL: link tokens and `token=` values are cut.

A download link's token (`/d/{token}/...`) is a bearer credential until it expires, and the
`?token=` of a verification or password link sets a password: an access log is read by more
people, and kept longer, than the secrets it would otherwise record.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
#: `/d/TOKEN` at the start of a path (or of a quoted request line in a log message)
_LINK_TOKEN = re.compile(r'(?<![^\s"])/d/[^/?#\s"]+')
#: the value of a `token` query parameter, wherever it stands in the query
_TOKEN_PARAM = re.compile(r"([?&;](?:[a-z_]*token)=)[^&;#\s\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with link tokens and `token=` query values replaced by REDACTED."""
    return _TOKEN_PARAM.sub(rf"\1{REDACTED}", _LINK_TOKEN.sub(f"/d/{REDACTED}", text))


class RedactSecrets(logging.Filter):
    """A filter for `uvicorn.access`: rewrites the record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log(logger: str = "uvicorn.access") -> None:
    """Install RedactSecrets on `logger` once (uvicorn's logging config keeps logger filters)."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, RedactSecrets) for f in target.filters):
        target.addFilter(RedactSecrets())

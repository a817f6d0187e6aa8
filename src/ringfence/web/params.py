"""Typed request parameters shared by every route: ids are positive 32-bit integers.

Row ids are INTEGER columns: 32 bits on PostgreSQL, 64 on SQLite. An id outside 1..2^31-1
names nothing on either, and handing it to the driver overflows (SQLite raises
OverflowError past 2^63, PostgreSQL NumericValueOutOfRange past 2^31): validation refuses it
first, with a one-line 422 like any other bad parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

from ringfence.errors import InvalidInput

#: the largest id an INTEGER column holds on every backend (PostgreSQL's is 32-bit)
MAX_ID = 2**31 - 1
#: the largest row offset (OFFSET takes a 64-bit integer on both backends)
MAX_OFFSET = 2**63 - 1

#: a row id in a URL path, e.g. `/account/tokens/{token_id}/revoke`
DbId = Annotated[int, Path(ge=1, le=MAX_ID, description="a row id")]
#: a row id in a JSON body, e.g. `{"request_ids": [1, 2]}`
DbIdField = Annotated[int, Field(ge=1, le=MAX_ID)]
#: a page offset in a query string
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
#: how many rows a page holds at most
Limit = Annotated[int, Query(ge=1, le=1000)]
#: a cursor naming a row (e.g. the audit log's `before=SEQ`), optional
Cursor = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def db_id(value: object, field: str = "id") -> int:
    """A row id from a form value; InvalidInput naming `field` when it is not one."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput(f"{field}: {text[:40]!r} is not a valid id")
    return int(text)

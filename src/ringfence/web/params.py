"""Typed request parameters shared by every route: ids are positive 64-bit integers.

A database id outside 1..2^63-1 names nothing, and handing it to the driver overflows
(SQLite raises OverflowError, PostgreSQL NumericValueOutOfRange): validation refuses it
first, with a one-line 422 like any other bad parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

from ringfence.errors import InvalidInput

#: the largest value of a signed 64-bit integer column (BIGINT on PostgreSQL, SQLite's INTEGER)
MAX_ID = 2**63 - 1

#: a row id in a URL path, e.g. `/account/tokens/{token_id}/revoke`
DbId = Annotated[int, Path(ge=1, le=MAX_ID, description="a row id")]
#: a row id in a JSON body, e.g. `{"request_ids": [1, 2]}`
DbIdField = Annotated[int, Field(ge=1, le=MAX_ID)]
#: a page offset in a query string
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
#: how many rows a page holds at most
Limit = Annotated[int, Query(ge=1, le=1000)]
#: a cursor naming a row (e.g. the audit log's `before=SEQ`), optional
Cursor = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def db_id(value: object, field: str = "id") -> int:
    """A row id from a form value; InvalidInput naming `field` when it is not one."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput(f"{field}: {text[:40]!r} is not a valid id")
    return int(text)

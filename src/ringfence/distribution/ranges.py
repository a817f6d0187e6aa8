"""HTTP byte ranges (RFC 9110 §14): one range per request, anything malformed is refused.

Multi-range requests (`bytes=0-1,5-9`) are refused with 416 rather than answered with a
multipart body: no download client asks for them, and refusing keeps every response a plain
slice of one recipient's file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ringfence.errors import RingfenceError

_SPEC = re.compile(r"^bytes=(\d*)-(\d*)$")
#: longer than any real range (two 20-digit offsets): Python refuses to parse integers of more
#: than 4,300 digits (ValueError), and a header that long is an attack, not a download
MAX_HEADER = 200


class RangeNotSatisfiable(RingfenceError):
    """A Range header that is malformed or lies outside the file."""

    http_status = 416


@dataclass(frozen=True)
class ByteRange:
    """The half-open slice [start, end) of a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """Number of bytes in the slice."""
        return self.end - self.start

    @property
    def partial(self) -> bool:
        """Whether this is less than the whole file (answered with 206)."""
        return not (self.start == 0 and self.end == self.size)

    def content_range(self) -> str:
        """The Content-Range header value of a 206 response."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange:
    """The slice a Range header asks for; the whole file without one.

    >>> parse_range("bytes=10-", 100)
    ByteRange(start=10, end=100, size=100)
    """
    if header is None or not header.strip():
        return ByteRange(0, size, size)
    if len(header) > MAX_HEADER:
        raise RangeNotSatisfiable(f"the Range header is {len(header)} characters long")
    match = _SPEC.match(header.strip().replace(" ", ""))
    if match is None or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable(f"the Range header {header[:80]!r} is not a single byte range")
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable("an empty suffix range asks for no bytes")
        return ByteRange(max(size - n, 0), size, size)
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        raise RangeNotSatisfiable(f"the Range header {header[:80]!r} ends before it starts")
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts at byte {start}, past the end ({size} bytes)")
    return ByteRange(start, end, size)


def if_range_holds(if_range: str | None, etag: str) -> bool:
    """Whether a Range request still applies: no If-Range, or it names the current ETag."""
    if if_range is None:
        return True
    return if_range.strip().removeprefix("W/").strip('"') == etag

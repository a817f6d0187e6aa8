"""Byte ranges: what a Range header selects, and what is refused with 416."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.distribution.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    if_range_holds,
    parse_range,
)


def test_no_header_is_the_whole_file() -> None:
    r = parse_range(None, 100)
    assert (r.start, r.end, r.partial) == (0, 100, False)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=10-", (10, 100)),
        ("bytes=-5", (95, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=90-500", (90, 100)),
        ("bytes=0-0", (0, 1)),
    ],
)
def test_ranges(header: str, expected: tuple[int, int]) -> None:
    r = parse_range(header, 100)
    assert (r.start, r.end) == expected


def test_content_range_names_the_last_byte_inclusive() -> None:
    assert ByteRange(10, 20, 100).content_range() == "bytes 10-19/100"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=100-",
        "bytes=5-2",
        "bytes=-0",
        "bytes=-",
        "items=0-1",
        "bytes=0-1,4-5",
        "bytes=a-b",
        "bytes 0-1",
        "0-1",
    ],
)
def test_malformed_or_unsatisfiable_ranges_are_refused(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 100)
    assert info.value.http_status == 416


def test_if_range_holds_only_for_the_current_etag() -> None:
    assert if_range_holds(None, "abc")
    assert if_range_holds('"abc"', "abc")
    assert not if_range_holds('"old"', "abc")


@given(st.integers(1, 10_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_any_satisfiable_range_lies_inside_the_file(size: int, a: int, b: int) -> None:
    try:
        r = parse_range(f"bytes={a}-{b}", size)
    except RangeNotSatisfiable:
        assert a >= size or b < a
        return
    assert 0 <= r.start < r.end <= size
    assert r.length == min(b, size - 1) - a + 1

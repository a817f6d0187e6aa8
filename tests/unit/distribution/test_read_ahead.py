"""A fingerprinted stream made one chunk ahead keeps its order, its errors and closes its file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ringfence.distribution.sending import read_ahead


class Source:
    """Chunks from a generator that records whether it was closed (as a file would be)."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.closed = False
        self.made = 0
        self.chunks = self._chunks(n, fail_at)

    def _chunks(self, n: int, fail_at: int | None) -> Iterator[bytes]:
        try:
            for i in range(n):
                if i == fail_at:
                    raise EOFError("weights file ends early")
                self.made += 1
                yield bytes([i]) * 3
        finally:
            self.closed = True


async def _all(source: Source) -> list[bytes]:
    return [chunk async for chunk in read_ahead(source.chunks)]


def test_every_chunk_arrives_in_order() -> None:
    source = Source(5)
    assert asyncio.run(_all(source)) == [bytes([i]) * 3 for i in range(5)]
    assert source.closed


def test_a_failure_of_the_source_reaches_the_stream() -> None:
    source = Source(5, fail_at=2)
    with pytest.raises(EOFError):
        asyncio.run(_all(source))
    assert source.closed


def test_a_client_that_leaves_early_closes_the_source() -> None:
    source = Source(100)

    async def first_two() -> list[bytes]:
        stream = read_ahead(source.chunks)
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()  # what the server does when the client hangs up
        return got

    assert asyncio.run(first_two()) == [b"\x00" * 3, b"\x01" * 3]
    assert source.closed
    assert source.made <= 3  # one ahead, never the whole file

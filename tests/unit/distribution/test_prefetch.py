"""The prefetching body iterator: order, errors, and an early close that frees the source."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ringfence.distribution.prefetch import prefetched


def test_yields_every_chunk_in_order() -> None:
    chunks = [bytes([i]) * (i + 1) for i in range(50)]
    assert list(prefetched(iter(chunks))) == chunks
    assert list(prefetched(iter([]))) == []


def test_an_error_in_the_source_reaches_the_consumer_after_the_chunks_before_it() -> None:
    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise EOFError("weights file ends at 10, expected 20")

    got = []
    with pytest.raises(EOFError, match="ends at 10"):
        for chunk in prefetched(source()):
            got.append(chunk)
    assert got == [b"a", b"b"]


def test_an_early_close_stops_the_producer_and_closes_the_source() -> None:
    closed = threading.Event()
    produced = []

    def source() -> Iterator[bytes]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield b"x" * 1024
        finally:
            closed.set()

    stream = prefetched(source())
    assert next(stream) == b"x" * 1024
    stream.close()  # what Starlette does when the client goes away
    assert closed.is_set()  # closed before close() returned: the file is released
    assert len(produced) <= 4  # one sent, one queued, one in hand: not the whole file
    assert not any(t.name == "ringfence-prefetch" for t in threading.enumerate())

"""Compute a download's next chunk on a thread of its own while the server sends this one.

Starlette pulls a sync body iterator one chunk at a time on its thread pool and then writes
the chunk to the socket on the event loop; meanwhile the fingerprint kernel, which needs no
GIL, sits idle, and the send waits for the next chunk's marking. Computing one chunk ahead
overlaps the two: on an idle server a lone download uses a second core; under many parallel
downloads every core is busy either way. The cost is one extra chunk in memory per download.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

_DONE = object()
#: how long a blocked producer waits before checking whether the consumer has gone
_POLL = 0.1


def prefetched(chunks: Iterator[bytes], depth: int = 1) -> Iterator[bytes]:
    """The items of `chunks`, in order, computed up to `depth` ahead on a worker thread.

    An exception in `chunks` is raised to the consumer. When the consumer stops early (a
    client that disconnects), the producer stops after the chunk in hand and `chunks` is
    closed (its file with it) before this generator's own close returns.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    gone = threading.Event()

    def put(item: object) -> bool:
        while not gone.is_set():
            try:
                handoff.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, who raises it
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="ringfence-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        gone.set()
        worker.join()

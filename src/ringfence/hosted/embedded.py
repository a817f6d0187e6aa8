"""The embedded backend: a release's own weights on CPU, in a worker process, batching
concurrent requests.

The server keeps only the tokenizer (to check prompts against the context before a call is
admitted); the model runs in a process of its own (`_worker`), so its Python-heavy forward
passes never compete for the server's GIL with the requests it serves. On Linux the worker
is forked (torch is imported first, no tensor op run, so the child starts in a second
rather than re-importing torch for a minute on a busy machine); elsewhere it is spawned.
A reader thread hands each event the worker sends back to the request's event loop.

Needs the `eval` extra (torch, transformers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import queue
import sys
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringfence.errors import InvalidInput, Unavailable
from ringfence.hosted import _worker
from ringfence.hosted.backends import Event, Finish, Generation

#: seconds to wait for the worker to load the model
LOAD_TIMEOUT = 600.0


@dataclass
class _Client:
    """Where the events of one request go."""

    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Any]


class EmbeddedBackend:
    """Generation with transformers on CPU from a directory in the Hugging Face layout."""

    def __init__(self, directory: Path, *, threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(directory))
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.context = int(config.get("max_position_embeddings") or 2048)
        _preload(directory)  # imported before the fork, so the worker inherits them

        method = "fork" if sys.platform == "linux" else "spawn"
        context: Any = multiprocessing.get_context(method)
        self._jobs: Any = context.Queue()
        self._events: Any = context.Queue()
        self._process = context.Process(
            target=_worker.main,
            args=(str(directory), threads, self._jobs, self._events),
            name="ringfence-inference",
            daemon=True,
        )
        self._process.start()
        self._ids = itertools.count(1)
        self._clients: dict[int, _Client] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._wait_until_loaded()
        self._reader = threading.Thread(target=self._read, name="ringfence-events", daemon=True)
        self._reader.start()

    def _wait_until_loaded(self) -> None:
        try:
            _, (kind, message) = self._events.get(timeout=LOAD_TIMEOUT)
        except queue.Empty:
            self._process.kill()
            raise Unavailable("the model did not load in time", hint="ask the lab") from None
        if kind != "ready":
            self._process.join(timeout=5)
            raise Unavailable(message, hint="ask the lab")

    # --- the contract ---------------------------------------------------------------------

    def encode(self, generation: Generation) -> list[int]:
        """The prompt's token ids (a chat through the tokenizer's chat template)."""
        if generation.kind == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise InvalidInput("this model has no chat template: use /v1/completions")
            ids = self.tokenizer.apply_chat_template(
                generation.messages, add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return [int(i) for i in self.tokenizer.encode(generation.prompt)]

    def prompt_tokens(self, generation: Generation) -> int:
        """The prompt's length; InvalidInput when it and max_tokens overflow the context."""
        n = len(self.encode(generation))
        if n == 0:
            raise InvalidInput("prompt: give at least one token of text")
        if n + generation.max_tokens > self.context:
            raise InvalidInput(
                f"this model's context is {self.context} tokens; the prompt has {n} and "
                f"max_tokens asks {generation.max_tokens}: shorten one of them"
            )
        return n

    async def stream(self, generation: Generation) -> AsyncGenerator[Event, None]:
        """Queue the request for the worker's next batch, then yield its events."""
        if self._closed or not self._process.is_alive():
            raise Unavailable("the model's worker is not running", hint="ask the lab")
        job_id = next(self._ids)
        client = _Client(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._clients[job_id] = client
        self._jobs.put(("job", job_id, generation, self.encode(generation)))
        finished = False
        try:
            while True:
                event = await client.events.get()
                if isinstance(event, tuple):  # ("error", message) from the worker
                    raise Unavailable(f"generation failed: {event[1]}", hint="ask the lab")
                yield event
                if isinstance(event, Finish):
                    finished = True
                    return
        finally:
            with self._lock:
                self._clients.pop(job_id, None)
            if not finished and not self._closed:
                self._jobs.put(("cancel", job_id))  # the caller went away: drop the row

    def close(self) -> None:
        """Stop the worker after the batch in hand."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()

    # --- events back from the worker ------------------------------------------------------

    def _read(self) -> None:
        while not self._closed:
            try:
                job_id, event = self._events.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive():
                    self._fail_all("the model's worker stopped")
                    return
                continue
            except (EOFError, OSError):
                return
            with self._lock:
                client = self._clients.get(job_id)
            if client is not None:
                _deliver(client, event)

    def _fail_all(self, message: str) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            _deliver(client, ("error", message))


def _deliver(client: _Client, event: Any) -> None:
    # RuntimeError: that request's event loop has closed, nobody waits for the event.
    with contextlib.suppress(RuntimeError):
        client.loop.call_soon_threadsafe(client.events.put_nowait, event)


def _preload(directory: Path) -> None:
    """Import torch and the model's class (no tensor op: safe to fork afterwards)."""
    import torch  # noqa: F401
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    # A model the mapping does not know fails in the worker, with its reason.
    with contextlib.suppress(Exception):
        MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(str(directory)))]

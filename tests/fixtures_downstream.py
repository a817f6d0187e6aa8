"""Fixtures for downstream and webhook tests: a real webhook receiver, derivative weights."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request the receiver got: headers, body, and whether its signature verified."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any = None


@dataclass
class Receiver:
    """A webhook endpoint on loopback that verifies each signature with the secrets it knows."""

    url: str
    secrets: dict[str, str] = field(default_factory=dict)  # path -> whsec_ secret
    received: list[Received] = field(default_factory=list)
    #: how many of the next requests to answer 500 (to exercise retries)
    fail_next: int = 0

    def at(self, path: str) -> list[Received]:
        """Requests that arrived at `path`."""
        return [r for r in self.received if r.headers.get("x-test-path") == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on a free loopback port that verifies Standard Webhooks signatures."""
    lock = threading.Lock()
    server: ThreadingHTTPServer
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-test-path"] = self.path
            secret = state.secrets.get(self.path)
            verified, payload = False, None
            if secret is not None:
                try:
                    payload = Webhook(secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
            with lock:
                state.received.append(Received(headers, body, verified, payload))
                failing = state.fail_next > 0
                state.fail_next -= 1 if failing else 0
            self.send_response(500 if failing or not verified else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def finetune(base: Path, out: Path, *, scale: float = 0.002, seed: int = 1) -> Path:
    """A "fine-tune" of the model in `base`: its weights plus a small random update."""
    rng = np.random.default_rng(seed)
    tensors = load_file(str(base / "model.safetensors"))
    tuned = {
        name: (t + rng.normal(0, scale, t.shape)).astype(np.float32) if t.ndim == 2 else t
        for name, t in tensors.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(tuned, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "README.md"):
        (out / name).write_bytes((base / name).read_bytes())
    return out

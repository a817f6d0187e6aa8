"""The upstream backend: an OpenAI-compatible engine the lab already runs (vLLM, llama.cpp's
server, TGI, or another ringfence's gateway), reached over HTTP by streaming requests.

The gateway still authorises, meters and audits; the engine sees only the lab's own key
(read from the environment variable the release's backend names, never stored in the
database) and the upstream model id.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from ringfence.errors import InvalidInput, Unavailable
from ringfence.hosted.backends import Event, Finish, Generation, Token

#: seconds to wait for the engine to connect, and between two streamed chunks
TIMEOUT = httpx.Timeout(10.0, read=120.0)


class UpstreamBackend:
    """Generation by an OpenAI-compatible engine at `url` (its base URL, ending in /v1)."""

    def __init__(self, url: str, model: str, *, key_env: str = "") -> None:
        self.url = url.rstrip("/")
        self.model = model
        key = os.environ.get(key_env, "") if key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(timeout=TIMEOUT, headers=headers)

    def prompt_tokens(self, generation: Generation) -> int | None:
        """Unknown here: the engine checks its own context and answers 400 when overflowed."""
        return None

    def _body(self, g: Generation) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": g.max_tokens,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if g.stop:
            body["stop"] = list(g.stop)
        if g.seed is not None:
            body["seed"] = g.seed
        if g.kind == "chat":
            body["messages"] = g.messages
            if g.logprobs is not None:
                body["logprobs"] = True
                body["top_logprobs"] = g.logprobs
            return "/chat/completions", body
        body["prompt"] = g.prompt
        if g.logprobs is not None:
            body["logprobs"] = g.logprobs
        return "/completions", body

    async def stream(self, generation: Generation) -> AsyncGenerator[Event, None]:
        """Relay the engine's server-sent events as Tokens, then one Finish."""
        path, body = self._body(generation)
        reason, usage = "stop", {"prompt_tokens": 0, "completion_tokens": 0}
        count = 0
        try:
            async with self._client.stream("POST", self.url + path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _refused(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise Unavailable(f"the upstream engine failed: {_message(chunk)}")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        for token in _tokens(generation.kind, choice):
                            count += 1
                            yield token
                        reason = choice.get("finish_reason") or reason
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the upstream engine at {self.url} did not answer ({type(exc).__name__})",
                hint="check that it runs, or ask the lab",
            ) from None
        yield Finish(
            reason,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or count),
        )

    def close(self) -> None:
        """Nothing to free eagerly: the connection pool closes with the process."""


def _message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", ""))[:300]
    return str(error or body)[:300]


def _refused(response: httpx.Response) -> Exception:
    try:
        message = _message(response.json())
    except ValueError:
        message = response.text[:300]
    if 400 <= response.status_code < 500:
        # The engine's own refusal of the request (context, parameters): the caller's to fix.
        return InvalidInput(f"the model refused the request: {message}")
    return Unavailable(f"the upstream engine failed ({response.status_code}): {message}")


def _tokens(kind: str, choice: dict[str, Any]) -> list[Token]:
    """The Tokens of one streamed choice, chat or completion shaped."""
    logprobs = choice.get("logprobs") or {}
    if kind == "chat":
        text = (choice.get("delta") or {}).get("content") or ""
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not content:
            return [Token(text)] if text else []
        return [
            Token(
                str(item.get("token", "")),
                item.get("logprob"),
                tuple(
                    (str(t["token"]), float(t["logprob"])) for t in item.get("top_logprobs") or ()
                ),
            )
            for item in content
        ]
    text = choice.get("text") or ""
    tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
    if not tokens:
        return [Token(text)] if text else []
    values = logprobs.get("token_logprobs") or [None] * len(tokens)
    tops = logprobs.get("top_logprobs") or [{}] * len(tokens)
    return [
        Token(
            str(tok),
            value,
            tuple(
                sorted(((str(k), float(v)) for k, v in (top or {}).items()), key=lambda kv: -kv[1])
            ),
        )
        for tok, value, top in zip(tokens, values, tops, strict=False)
    ]

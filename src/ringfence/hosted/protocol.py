"""OpenAI's wire format: request bodies read into a `Generation`, answers and stream chunks.

Only what the endpoint supports is accepted (one choice, text content); anything else is
refused with a one-line InvalidInput rather than silently ignored, so a caller never reads
an answer to a question it did not ask.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringfence.errors import InvalidInput
from ringfence.hosted.backends import Finish, Generation, Token

#: the default length of an answer when the request does not say (OpenAI's for completions)
DEFAULT_MAX_TOKENS = 16


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part] = Field(max_length=10_000_000)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if len(stops) > 4 or any(len(s) > 200 for s in stops):
            raise InvalidInput("stop: give at most 4 sequences of at most 200 characters")
        return stops


class ChatRequest(_Common):
    """The body of POST /v1/chat/completions."""

    messages: list[_Message] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(_Common):
    """The body of POST /v1/completions."""

    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: Literal[False] = False


def _parse(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"{where or 'body'}: {first.get('msg', 'invalid value')}") from None


def read_chat(body: Any) -> tuple[ChatRequest, Generation]:
    """A chat request's body as a Generation; InvalidInput with the first problem."""
    req: ChatRequest = _parse(ChatRequest, body)
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidInput("top_logprobs: set logprobs to true to ask for them")
    generation = Generation(
        kind="chat",
        messages=[{"role": m.role, "content": m.text()} for m in req.messages],
        max_tokens=req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stops(),
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        seed=req.seed,
    )
    return req, generation


def read_completion(body: Any) -> tuple[CompletionRequest, Generation]:
    """A completion request's body as a Generation; InvalidInput with the first problem."""
    req: CompletionRequest = _parse(CompletionRequest, body)
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidInput("prompt: give one prompt per request")
        prompt = prompt[0]
    generation = Generation(
        kind="completion",
        prompt=prompt,
        max_tokens=req.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stops(),
        logprobs=req.logprobs,
        seed=req.seed,
    )
    return req, generation


def new_id(kind: str) -> str:
    """An answer's id, `chatcmpl-...` or `cmpl-...`."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"


def usage(finish: Finish) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


def _chat_logprob(token: Token) -> dict[str, Any]:
    return {
        "token": token.text,
        "logprob": token.logprob,
        "bytes": list(token.text.encode()),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in token.top
        ],
    }


def _completion_logprobs(tokens: list[Token], offset: int) -> dict[str, Any]:
    offsets, at = [], offset
    for token in tokens:
        offsets.append(at)
        at += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


def answer(
    kind: str, model: str, tokens: list[Token], finish: Finish, *, logprobs: bool
) -> dict[str, Any]:
    """A whole (non-streamed) answer."""
    text = "".join(t.text for t in tokens)
    base = {"id": new_id(kind), "created": int(time.time()), "model": model}
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": [_chat_logprob(t) for t in tokens]} if logprobs else None,
            "finish_reason": finish.reason,
        }
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage(finish)}
    choice = {
        "index": 0,
        "text": text,
        "logprobs": _completion_logprobs(tokens, 0) if logprobs else None,
        "finish_reason": finish.reason,
    }
    return {**base, "object": "text_completion", "choices": [choice], "usage": usage(finish)}


class Chunks:
    """The server-sent events of one streamed answer."""

    def __init__(self, kind: str, model: str, *, logprobs: bool, include_usage: bool) -> None:
        self.kind, self.model = kind, model
        self.logprobs, self.include_usage = logprobs, include_usage
        self.id, self.created = new_id(kind), int(time.time())
        self.offset = 0

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        body = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"

    def first(self) -> str:
        """The opening chunk (chat: the assistant role), or nothing for completions."""
        if self.kind != "chat":
            return ""
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def token(self, token: Token) -> str:
        """One generated piece."""
        if self.kind == "chat":
            lp = {"content": [_chat_logprob(token)]} if self.logprobs else None
            choice = {"index": 0, "delta": {"content": token.text}, "logprobs": lp}
        else:
            lp = _completion_logprobs([token], self.offset) if self.logprobs else None
            choice = {"index": 0, "text": token.text, "logprobs": lp}
        self.offset += len(token.text)
        return self._event([{**choice, "finish_reason": None}])

    def finish(self, finish: Finish) -> str:
        """The closing chunk(s) and the terminator."""
        if self.kind == "chat":
            choice: dict[str, Any] = {"index": 0, "delta": {}, "logprobs": None}
        else:
            choice = {"index": 0, "text": "", "logprobs": None}
        out = self._event([{**choice, "finish_reason": finish.reason}])
        if self.include_usage:
            out += self._event([], usage=usage(finish))
        return out + "data: [DONE]\n\n"


def error_event(message: str, kind: str, status: int) -> str:
    """A stream's last event when it cannot go on (OpenAI's error object), then [DONE]."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"


def error_body(status: int, message: str, code: str) -> dict[str, Any]:
    """OpenAI's error shape, which the `openai` client reads into its exceptions."""
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": code}}


def error_type(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")

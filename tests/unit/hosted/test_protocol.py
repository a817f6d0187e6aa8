"""OpenAI's wire format: what is accepted, what is refused in one line, what chunks look like."""

from __future__ import annotations

import json

import pytest

from ringfence.errors import InvalidInput
from ringfence.hosted import protocol
from ringfence.hosted.backends import Backend, Finish, Token
from ringfence.hosted.embedded import EmbeddedBackend
from ringfence.hosted.upstream import UpstreamBackend

pytestmark = pytest.mark.no_database


def test_both_backends_keep_the_contract() -> None:
    """A conformance check that mypy also makes: each backend is a `Backend`."""
    backends: list[type[Backend]] = [EmbeddedBackend, UpstreamBackend]
    for cls in backends:
        for name in ("prompt_tokens", "stream", "close"):
            assert callable(getattr(cls, name))


def test_chat_reads_into_a_generation() -> None:
    req, g = protocol.read_chat(
        {
            "model": "lab/m@1.0",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_completion_tokens": 7,
            "logprobs": True,
            "top_logprobs": 2,
            "stop": "\n",
            "unknown_field": 1,
        }
    )
    assert req.model == "lab/m@1.0" and g.kind == "chat"
    assert g.messages == [{"role": "user", "content": "hi"}]
    assert (g.max_tokens, g.logprobs, g.stop) == (7, 2, ("\n",))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
            "logprobs",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            "temperature",
        ),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("not an object", "body"),
    ],
)
def test_chat_refusals_are_one_line(body: object, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        protocol.read_chat(body)
    assert says in refused.value.message and "\n" not in refused.value.diagnostics()


def test_completion_takes_one_prompt() -> None:
    _, g = protocol.read_completion({"model": "m", "prompt": ["one"], "logprobs": 3})
    assert g.prompt == "one" and g.logprobs == 3 and g.max_tokens == protocol.DEFAULT_MAX_TOKENS
    with pytest.raises(InvalidInput, match="one prompt"):
        protocol.read_completion({"model": "m", "prompt": ["a", "b"]})
    with pytest.raises(InvalidInput, match="echo"):
        protocol.read_completion({"model": "m", "prompt": "a", "echo": True})


def test_stream_chunks_end_with_usage_then_done() -> None:
    chunks = protocol.Chunks("chat", "lab/m@1.0", logprobs=True, include_usage=True)
    first = json.loads(chunks.first().removeprefix("data: "))
    assert first["choices"][0]["delta"]["role"] == "assistant"
    piece = json.loads(chunks.token(Token("Hi", -0.5, (("Hi", -0.5), ("Ho", -1.0))))[6:])
    content = piece["choices"][0]["logprobs"]["content"][0]
    assert content["token"] == "Hi" and len(content["top_logprobs"]) == 2
    end = chunks.finish(Finish("length", 3, 1)).strip().split("\n\n")
    assert json.loads(end[0][6:])["choices"][0]["finish_reason"] == "length"
    assert json.loads(end[1][6:])["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
    }
    assert end[2] == "data: [DONE]"


def test_completion_logprobs_carry_offsets() -> None:
    tokens = [Token("a", -1.0, (("a", -1.0),)), Token("bc", -2.0, (("bc", -2.0),))]
    answer = protocol.answer("completion", "m", tokens, Finish("stop", 1, 2), logprobs=True)
    lp = answer["choices"][0]["logprobs"]
    assert lp["tokens"] == ["a", "bc"] and lp["text_offset"] == [0, 1]
    assert lp["top_logprobs"] == [{"a": -1.0}, {"bc": -2.0}]


def test_errors_take_openai_shape() -> None:
    body = protocol.error_body(429, "slow down.", "QuotaExceeded")
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["message"] == "slow down."
    assert protocol.error_type(400) == "invalid_request_error"
    assert protocol.error_type(503) == "server_error"

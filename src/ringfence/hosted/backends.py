"""The contract every generation backend keeps, and the values that cross it.

The gateway authorises, meters and audits; a backend only generates. Two implement it:
`embedded.EmbeddedBackend` (the release's own weights, here, on CPU) and
`upstream.UpstreamBackend` (an OpenAI-compatible engine the lab already runs).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Generation:
    """One request to generate: a chat (messages) or a plain completion (prompt)."""

    #: "chat" or "completion"
    kind: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str = ""
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    #: None: no log-probabilities; N >= 0: the chosen token's and the N most likely ones
    logprobs: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Token:
    """A piece of generated text, with its log-probability when asked for."""

    text: str
    logprob: float | None = None
    #: the most likely alternatives at this step: (text, logprob), best first
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Finish:
    """The end of a generation: why, and how many tokens it read and wrote."""

    reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


Event = Token | Finish


class Backend(Protocol):
    """What generates for a hosted release."""

    def prompt_tokens(self, generation: Generation) -> int | None:
        """The prompt's length in tokens, checked against the context (None: unknown here).

        Raises InvalidInput when the prompt and `max_tokens` do not fit the context.
        """
        ...

    def stream(self, generation: Generation) -> AsyncGenerator[Event, None]:
        """Tokens as they are generated, then one Finish."""
        ...

    def close(self) -> None:
        """Let go of the weights or connections."""
        ...

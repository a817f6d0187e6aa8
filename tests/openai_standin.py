"""A loopback OpenAI-compatible server over a transformers model, for attribution tests.

`/v1/models`, `/v1/completions` (with `logprobs` = top-k) and `/v1/chat/completions` (with
`logprobs` and `top_logprobs`), answered by a local causal LM, served exact or after a Q8_0 /
Q4_0 round trip as a leaker running llama.cpp would. Tokens are named as vLLM names them
(`ringfence.incidents.attribution.token_string`). `build_tiny_llama` writes a small random
llama in the layout labs publish (config.json, tokenizer.json, model.safetensors), whose MLP
matrices are big enough to carry a TINY_CODE fingerprint.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from ringfence.incidents.attribution import LocalModel, load, quantised, token_string


def build_tiny_llama(directory: Path, *, seed: int = 0) -> Path:
    """A random llama (3 layers, hidden 64, MLP 1024) with a byte-level tokenizer, saved."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = LlamaConfig(
        vocab_size=len(alphabet),
        hidden_size=64,
        intermediate_size=1024,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        # wide weights: a random model then has peaked, idiosyncratic next-token choices
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(directory), safe_serialization=True)
    (directory / "README.md").write_text("# tiny llama\nA random model made by the tests.\n")
    return directory


class CompletionIn(BaseModel):
    model: str
    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    logprobs: int | None = None
    seed: int | None = None


class ChatIn(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int = 16
    temperature: float = 1.0
    logprobs: bool = False
    top_logprobs: int | None = None
    seed: int | None = None


def _generate(
    local: LocalModel, ids: list[int], n: int, temperature: float, top: int, seed: int | None
) -> tuple[list[int], list[float], list[dict[str, float]]]:
    rng = np.random.default_rng(seed)
    seq, tokens, chosen, tops = list(ids), [], [], []
    for _ in range(max(1, min(n, 64))):
        lp = local.next_logprobs(seq)
        if temperature <= 0:
            token = int(np.argmax(lp))
        else:
            p = np.exp(lp / temperature)
            token = int(rng.choice(p.size, p=p / p.sum()))
        seq.append(token)
        tokens.append(token)
        chosen.append(float(lp[token]))
        if top:
            tops.append(local.top(seq[:-1], top))
    return tokens, chosen, tops


def make_app(local: LocalModel, name: str, api_key: str, *, logprobs: bool = True) -> FastAPI:
    """The OpenAI-compatible app over `local`; `logprobs=False` answers none, like many hosts."""
    app = FastAPI()

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {api_key}":
            raise HTTPException(401, "invalid api key")

    @app.get("/v1/models")
    def models_(authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "x"}]}

    @app.post("/v1/completions")
    def completions(body: CompletionIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        top = min(body.logprobs or 0, 20) if logprobs else 0
        ids = local.encode(body.prompt)
        tokens, chosen, tops = _generate(
            local, ids, body.max_tokens, body.temperature, top, body.seed
        )
        names = [token_string(local.tokenizer, t) for t in tokens]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "text": local.tokenizer.decode(tokens),
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": names,
                        "token_logprobs": chosen,
                        "top_logprobs": tops,
                        "text_offset": [0] * len(tokens),
                    }
                    if top
                    else None,
                }
            ],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(tokens)},
        }

    @app.post("/v1/chat/completions")
    def chat(body: ChatIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        prompt = "".join(f"{m.get('role')}: {m.get('content')}\n" for m in body.messages)
        top = min(body.top_logprobs or 0, 20) if logprobs and body.logprobs else 0
        tokens, chosen, tops = _generate(
            local,
            local.encode(prompt + "assistant: "),
            body.max_tokens,
            body.temperature,
            top,
            body.seed,
        )
        content = None
        if top:
            content = [
                {
                    "token": token_string(local.tokenizer, t),
                    "logprob": lp,
                    "bytes": None,
                    "top_logprobs": [
                        {"token": k, "logprob": v, "bytes": None} for k, v in alts.items()
                    ],
                }
                for t, lp, alts in zip(tokens, chosen, tops, strict=True)
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": local.tokenizer.decode(tokens)},
                    "finish_reason": "length",
                    "logprobs": {"content": content} if content is not None else None,
                }
            ],
        }

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    directory: Path | None = None,
    *,
    local: LocalModel | None = None,
    quantisation: str | None = None,
    logprobs: bool = True,
    name: str = "leaked-model",
    api_key: str = "sk-standin",
) -> Iterator[str]:
    """Serve a model directory (or a loaded model) on loopback; yields the base URL (…/v1)."""
    import uvicorn

    if local is None:
        assert directory is not None
        local = load(directory)
    if quantisation:
        local = quantised(local, quantisation)
    port = _free_port()
    config = uvicorn.Config(
        make_app(local, name, api_key, logprobs=logprobs),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

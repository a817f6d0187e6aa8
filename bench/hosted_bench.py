"""Hosted inference: generated tokens/s through the OpenAI-compatible endpoint against the same
embedded backend called in-process, with 1 and 8 concurrent clients; time to first token.

The real demo model (SmolLM2-135M-Instruct, bf16 weights loaded as fp32 on CPU) when
`ringfence demo prepare` has run, else the test suite's tiny random Llama. A real server
(`ringfence serve`, its own process, as deployed) serves a hosted grant; the bench then
alternates rounds of the same requests sent by the `openai` client through the endpoint
(authorised, metered, audited, streamed) and given in-process to an EmbeddedBackend loaded
from the same files with the same settings. Rounds interleave so that a busy machine slows
both sides alike; torch gets one thread on each side.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import ratio_row

TITLE = "Hosted inference: the endpoint against the backend in-process"
REPO = Path(__file__).resolve().parent.parent
ROUNDS = 3
MAX_TOKENS = 16
GOAL = 0.8


def _world(home: Path, model_dir: Path) -> tuple[Any, str, str]:
    """Services with the model published, a hosted grant with a wide quota, its token."""
    from tests.fixtures_access import make_user

    from ringfence.access.grants import issue_grant
    from ringfence.access.licences import install_research_licence
    from ringfence.access.models import LicenceAcceptance
    from ringfence.accounts.tokens import create_token
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.hosted.quotas import set_quota
    from ringfence.settings import Settings
    from ringfence.wiring import build

    services = build(Settings(home=home, hosted_threads=1))  # type: ignore[call-arg]
    services.prepare()
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        licence = install_research_licence(session, actor="bench")
        release = catalogue.publish(
            session, services.blobs, model_dir, model="bench-llm", version="1.0"
        )
        release.circle, release.licence = "research", licence
        user = make_user(session, "partner@bench.example")
        grant = issue_grant(session, user, release, via="direct", granted_by="bench", mode="hosted")
        set_quota(session, grant, requests_per_minute=100_000, parallel=64)
        session.add(
            LicenceAcceptance(
                user_id=user.id,
                release_id=release.id,
                licence_id=licence.id,
                licence_ref=licence.ref,
                text_sha256=licence.sha256,
            )
        )
        token = create_token(session, user, "download", actor="bench").raw
    return services, token, "lab/bench-llm@1.0"


def _prompt(i: int) -> str:
    return f"Write a short note about the number {i}."


def _endpoint_call(url: str, token: str, model: str, i: int) -> tuple[float, int, float]:
    """One streamed chat call: (time to first token, tokens, wall time)."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=600)
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": _prompt(i)}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return first or 0.0, tokens, time.perf_counter() - started


async def _inprocess_call(backend: Any, i: int) -> tuple[float, int, float]:
    from ringfence.hosted.backends import Finish, Generation

    g = Generation(
        "chat",
        messages=[{"role": "user", "content": _prompt(i)}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    started = time.perf_counter()
    first = None
    tokens = 0
    async for event in backend.stream(g):
        if isinstance(event, Finish):
            tokens = event.completion_tokens
        elif first is None and event.text:
            first = time.perf_counter() - started
    return first or 0.0, tokens, time.perf_counter() - started


def _round_endpoint(
    url: str, token: str, model: str, clients: int
) -> tuple[list[float], int, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: _endpoint_call(url, token, model, i), range(clients)))
    wall = time.perf_counter() - started
    return [r[0] for r in results], sum(r[1] for r in results), wall


def _round_inprocess(backend: Any, clients: int) -> tuple[list[float], int, float]:
    async def many() -> list[tuple[float, int, float]]:
        return await asyncio.gather(*[_inprocess_call(backend, i) for i in range(clients)])

    started = time.perf_counter()
    results = asyncio.run(many())
    wall = time.perf_counter() - started
    return [r[0] for r in results], sum(r[1] for r in results), wall


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def run() -> list[dict[str, Any]]:
    """Tokens/s at 1 and 8 clients, both ways; TTFT p50/p99 through the endpoint."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures_hosted import SMOLLM2, ringfence_process, write_tiny_llm

    from ringfence.hosted.embedded import EmbeddedBackend

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if (SMOLLM2 / "model.safetensors").exists():
            model_dir, model_name = SMOLLM2, "SmolLM2-135M-Instruct"
        else:
            model_dir, model_name = write_tiny_llm(Path(tmp) / "tiny"), "a tiny random Llama"
        home = Path(tmp) / "home"
        services, token, model = _world(home, model_dir)
        services.engine.dispose()
        with ringfence_process(home, RINGFENCE_HOSTED_THREADS="1") as url:
            _endpoint_call(url, token, model, 0)  # the server loads the weights, untimed
            # The files the server materialised from its blobs, loaded the same way here.
            (materialised,) = (home / "hosted").iterdir()
            backend = EmbeddedBackend(materialised, threads=1)
            _round_inprocess(backend, 1)  # warm the in-process path too
            rows = _measure(url, token, model, backend, model_name)
            backend.close()
    return rows


def _measure(
    url: str, token: str, model: str, backend: Any, model_name: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for clients in (1, 8):
        ttft: dict[str, list[float]] = {"endpoint": [], "in-process": []}
        tokens = {"endpoint": 0, "in-process": 0}
        walls = {"endpoint": 0.0, "in-process": 0.0}
        for _ in range(ROUNDS):
            for side in ("in-process", "endpoint"):
                if side == "endpoint":
                    t, n, w = _round_endpoint(url, token, model, clients)
                else:
                    t, n, w = _round_inprocess(backend, clients)
                ttft[side] += t
                tokens[side] += n
                walls[side] += w
        rate = {side: tokens[side] / walls[side] for side in walls}
        note = (
            f"{model_name}, {MAX_TOKENS} tokens per request, greedy, streamed; "
            f"{ROUNDS} interleaved rounds of {clients} concurrent request(s) each side; "
            "1 CPU thread for torch"
        )
        rows.append(
            ratio_row(
                "hosted",
                f"generated tokens/s, {clients} client(s)",
                rate["endpoint"],
                "tokens/s",
                "the same backend called in-process",
                rate["in-process"],
                higher_is_better=True,
                goal=GOAL,
                note=note,
            )
        )
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            rows.append(
                ratio_row(
                    "hosted",
                    f"time to first token {label}, {clients} client(s)",
                    _p(ttft["endpoint"], q) * 1000,
                    "ms",
                    "the same backend called in-process",
                    _p(ttft["in-process"], q) * 1000,
                    higher_is_better=False,
                    note=f"{len(ttft['endpoint'])} requests each side; reported, no goal",
                )
            )
    return rows

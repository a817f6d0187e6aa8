"""The hosted area's routes: the OpenAI-compatible endpoint (/v1) and the usage pages.

Mounted by the web app (`ringfence.web.app.AREAS`) outside /api/v1: OpenAI clients expect
`{base_url}/chat/completions` with base_url ending in /v1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter

from ringfence.hosted import gateway, web_usage


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Stop the inference workers when the app stops."""
    try:
        yield
    finally:
        pool = getattr(app.state, "hosted_backends", None)
        if pool is not None:
            pool.close()


router = APIRouter(lifespan=lifespan)
router.include_router(gateway.router)
router.include_router(web_usage.router)

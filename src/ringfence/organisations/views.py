"""The organisations area's routes: the institutions & NDAs page and its API.

Mounted as the area's `router`, which the web app includes (`ringfence.web.app.AREAS`).
"""

from __future__ import annotations

from fastapi import APIRouter

from ringfence.organisations import api, web_admin

router = APIRouter()
router.include_router(web_admin.router)
router.include_router(api.router)

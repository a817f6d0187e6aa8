"""The incidents area's routes: admin pages (`web_admin`) and the JSON API (`api`)."""

from __future__ import annotations

from fastapi import APIRouter

from ringfence.incidents import api, web_admin

router = APIRouter()
router.include_router(web_admin.router)
router.include_router(api.router)

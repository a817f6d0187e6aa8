"""The access area's routes: account pages, the release page's access block, lab pages, API.

One router per seam (`web_account`, `web_two_factor`, `web_release`, `web_admin`, `api`),
mounted here as the area's `router`, which the web app includes.
"""

from __future__ import annotations

from fastapi import APIRouter

from ringfence.access import api, web_account, web_admin, web_release, web_two_factor

router = APIRouter()
router.include_router(web_account.router)
router.include_router(web_two_factor.router)
router.include_router(web_release.router)
router.include_router(web_admin.router)
router.include_router(api.router)

"""The access area's routes: the release page's access block, the lab's access pages, the API.

One router per seam (`web_release`, `web_admin`, `api`), mounted here as the area's `router`,
which the web app includes (`ringfence.web.app.AREAS`).
"""

from __future__ import annotations

from fastapi import APIRouter

from ringfence.access import api, web_admin, web_release

router = APIRouter()
router.include_router(web_release.router)
router.include_router(web_admin.router)
router.include_router(api.router)

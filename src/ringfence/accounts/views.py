"""The accounts area's routes: sign-up and sign-in, my account, two-factor, the users page.

One router per seam (`web_account`, `web_two_factor`, `web_admin`), mounted here as the area's
`router`, which the web app includes (`ringfence.web.app.AREAS`).
"""

from __future__ import annotations

from fastapi import APIRouter

from ringfence.accounts import web_account, web_admin, web_two_factor

router = APIRouter()
router.include_router(web_account.router)
router.include_router(web_two_factor.router)
router.include_router(web_admin.router)

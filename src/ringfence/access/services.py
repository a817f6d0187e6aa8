"""The access area's public surface: what other areas, the web app and the CLI call.

The work is split by seam into `accounts`, `tokens`, `circles`, `licences`, `requests` and
`grants`; this module re-exports the functions other areas rely on, so they import one place:

    from ringfence.access.services import authorise_download, user_from_token

    grant = authorise_download(session, user, release)   # PermissionDenied says why not
    token = user_from_token(session, raw_token)   # its scope: ringfence.web.security
"""

from __future__ import annotations

from ringfence.access.accounts import (
    add_institution,
    add_user,
    authenticate,
    get_institution,
    get_user,
    list_institutions,
    list_users,
    sign_up,
    update_user,
    verify_email,
)
from ringfence.access.circles import admits, rank, set_circle, standing
from ringfence.access.grants import (
    add_grant,
    authorise_download,
    expire_due,
    issue_grant,
    list_grants,
    revoke_grant,
)
from ringfence.access.licences import accept_licence, has_accepted, set_release_licence
from ringfence.access.models import CIRCLES, ROLES, SCOPES, Grant, User
from ringfence.access.requests import decide, submit_request
from ringfence.access.tokens import create_token, user_from_token

__all__ = [
    "CIRCLES",
    "ROLES",
    "SCOPES",
    "Grant",
    "User",
    "accept_licence",
    "add_grant",
    "add_institution",
    "add_user",
    "admits",
    "authenticate",
    "authorise_download",
    "create_token",
    "decide",
    "expire_due",
    "get_institution",
    "get_user",
    "has_accepted",
    "issue_grant",
    "list_grants",
    "list_institutions",
    "list_users",
    "rank",
    "revoke_grant",
    "set_circle",
    "set_release_licence",
    "sign_up",
    "standing",
    "submit_request",
    "update_user",
    "user_from_token",
    "verify_email",
]

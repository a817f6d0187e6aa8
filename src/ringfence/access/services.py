"""The access area's public surface: what other areas, the web app and the CLI call.

The work is split by seam into `circles`, `licences`, `policy`, `requests`, `grants` and
`expiry`; this module re-exports the functions other areas rely on, so they import one place:

    from ringfence.access.services import authorise_download

    grant = authorise_download(session, user, release)   # PermissionDenied says why not

People and their tokens are `ringfence.accounts.services`, institutions and NDAs
`ringfence.organisations.services`.
"""

from __future__ import annotations

from ringfence.access.circles import admits, rank, set_circle, standing, visible, visible_release
from ringfence.access.grants import (
    add_grant,
    authorise_download,
    authorise_hosted,
    issue_grant,
    list_grants,
    revoke_grant,
)
from ringfence.access.licences import accept_licence, has_accepted, set_release_licence
from ringfence.access.models import CIRCLES, Grant
from ringfence.access.requests import decide, submit_request

__all__ = [
    "CIRCLES",
    "Grant",
    "accept_licence",
    "add_grant",
    "admits",
    "authorise_download",
    "authorise_hosted",
    "decide",
    "has_accepted",
    "issue_grant",
    "list_grants",
    "rank",
    "revoke_grant",
    "set_circle",
    "set_release_licence",
    "standing",
    "submit_request",
    "visible",
    "visible_release",
]

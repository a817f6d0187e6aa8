"""What a person sees of their access to a release: the read model behind the release page's
access block and `GET /api/v1/access/releases/{name}/{version}`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ringfence.access.circles import admits, standing
from ringfence.access.grants import authorise_download, list_grants
from ringfence.access.licences import has_accepted
from ringfence.access.policy import get_policy
from ringfence.access.requests import find_request
from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.errors import NotFound, RingfenceError


def access_state(session: Session, user: User | None, release: Release) -> dict[str, Any]:
    """What a person sees of their access to a release, as plain values."""
    licence = release.licence
    release_policy = get_policy(session, release)
    state: dict[str, Any] = {
        "circle": release.circle,
        "licence": {
            "ref": licence.ref,
            "title": licence.title,
            "sha256": licence.sha256,
            "text": licence.text,
        }
        if licence
        else None,
        "fields": release_policy.fields,
        "signed_in": user is not None,
        "verified": bool(user and user.email_verified),
        "admitted": bool(user and admits(session, release, user)),
        "standing": standing(session, user) if user else None,
        "request": None,
        "grant": None,
        "accepted": bool(user and has_accepted(session, user, release)),
        "can_download": False,
        "reason": "sign in to request access",
    }
    if user is None:
        return state
    req = find_request(session, user, release)
    if req is not None:
        state["request"] = {
            "id": req.id,
            "state": req.state,
            "reason": req.reason,
            "appealed": req.appeal is not None,
        }
    grant = next(iter(list_grants(session, release=release, user=user)), None)
    if grant is not None:
        state["grant"] = {
            "id": grant.id,
            "state": grant.state,
            "expires_at": grant.expires_at,
            "revoked_reason": grant.revoked_reason,
        }
    try:
        authorise_download(session, user, release)
        state["can_download"], state["reason"] = True, ""
    except RingfenceError as exc:
        state["reason"] = exc.diagnostics()
    return state


def access_state_by_id(session: Session, user_id: int | None, release_id: int) -> dict[str, Any]:
    """`access_state` for a user and release named by id (a page renders in its own session)."""
    user = session.get(User, user_id) if user_id is not None else None
    release = session.get(Release, release_id)
    if release is None:
        raise NotFound(f"no release {release_id}")
    return access_state(session, user, release)

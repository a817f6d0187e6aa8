"""The organisations part of the JSON API (/api/v1/organisations): admin-scope tokens only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ringfence.access import circles
from ringfence.accounts.models import User
from ringfence.organisations import services as organisations
from ringfence.web.deps import db_session
from ringfence.web.pages import commit_and_deliver
from ringfence.web.params import DbId
from ringfence.web.security import Permission, api_user, client_ip

router = APIRouter(prefix="/api/v1/organisations", tags=["organisations"])


class RevokeIn(BaseModel):
    """Why the NDA ends early (the audit log keeps it)."""

    reason: str = Field(max_length=500)


@router.post("/ndas/{nda_id}/revoke")
def revoke_nda(
    nda_id: DbId,
    body: RevokeIn,
    request: Request,
    user: User = Depends(api_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """End an NDA early: its institution's members stop being partners at once."""
    ended = circles.revoke_nda(
        session,
        organisations.get_nda(session, nda_id),
        reason=body.reason,
        actor=user.email,
        ip=client_ip(request),
    )
    commit_and_deliver(request, session)
    return organisations.nda_record(ended.nda) | {
        "institution_grants_revoked": ended.institution_grants
    }

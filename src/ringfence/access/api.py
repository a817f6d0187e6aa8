"""The access part of the JSON API (/api/v1/access), for the client CLI and integrations.

Bearer tokens authenticate, each route's permission checked against the token's scope
(`ringfence.web.security.RULES`); a browser session cookie is ignored here, so no page can be
ridden into an API call.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ringfence.access import circles, grants, licences, policy, requests, status
from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import commit_and_deliver
from ringfence.web.params import DbId, DbIdField, Limit, Offset
from ringfence.web.security import Permission, api_user, client_ip

router = APIRouter(prefix="/api/v1/access", tags=["access"])


class RequestIn(BaseModel):
    """A request for a release: the form's answers, optionally the licence text's hash."""

    answers: dict[str, Any] = Field(default_factory=dict)
    licence_sha256: str | None = Field(default=None, max_length=64)


class AcceptIn(BaseModel):
    """The sha256 of the licence text the client showed."""

    sha256: str = Field(max_length=64)


class DecisionIn(BaseModel):
    """A reviewer's decision on one or more requests."""

    request_ids: list[DbIdField] = Field(min_length=1, max_length=1000)
    approve: bool
    reason: str = Field(default="", max_length=500)
    #: hosted: the grant opens the inference endpoint only, never a file (#15)
    mode: Literal["download", "hosted"] | None = None


class AppealIn(BaseModel):
    """An appeal's text."""

    text: str = Field(max_length=500)


class PolicyIn(BaseModel):
    """A release's request form, auto-approval rules and grant lifetime; omitted parts stay."""

    fields: list[dict[str, Any]] | None = Field(default=None, max_length=30)
    rules: list[dict[str, Any]] | None = Field(default=None, max_length=20)
    grant_days: int | None = None


class CircleIn(BaseModel):
    """A new circle and why."""

    circle: str
    reason: str = Field(default="", max_length=500)


@router.get("/releases/{name}/{version}")
def release_status(
    name: str,
    version: str,
    user: User = Depends(api_user(Permission.BROWSE)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """My access to a release: circle, licence (with its text), request, grant, can_download."""
    release = circles.visible_release(session, f"{name}@{version}", user)
    state = status.access_state(session, user, release)
    if state["grant"]:
        state["grant"]["expires_at"] = state["grant"]["expires_at"].isoformat(timespec="seconds")
    return {"release": release.ref, **state}


@router.post("/releases/{name}/{version}/licence")
def accept_licence(
    name: str,
    version: str,
    body: AcceptIn,
    request: Request,
    user: User = Depends(api_user(Permission.REQUEST)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Accept the release's current licence (the hash must be the current text's)."""
    release = circles.visible_release(session, f"{name}@{version}", user)
    acceptance = licences.accept_licence(
        session,
        user,
        release,
        text_sha256=body.sha256,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    session.commit()
    return {
        "release": release.ref,
        "licence": acceptance.licence_ref,
        "sha256": acceptance.text_sha256,
        "accepted_at": acceptance.accepted_at.isoformat(timespec="seconds"),
    }


@router.post("/releases/{name}/{version}/requests")
def submit_request(
    name: str,
    version: str,
    body: RequestIn,
    request: Request,
    user: User = Depends(api_user(Permission.REQUEST)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Ask for a release (idempotent while pending or approved)."""
    release = circles.visible_release(session, f"{name}@{version}", user)
    req = requests.submit_request(
        session,
        user,
        release,
        body.answers,
        licence_sha256=body.licence_sha256,
        via="api",
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        base_url=get_services(request).settings.base_url,
    )
    out = requests.request_record(req)
    commit_and_deliver(request, session)
    return out


@router.get("/requests")
def my_requests(
    user: User = Depends(api_user(Permission.BROWSE)), session: Session = Depends(db_session)
) -> list[dict[str, Any]]:
    """My requests, newest first."""
    return [requests.request_record(r) for r in requests.user_requests(session, user)]


@router.post("/requests/{request_id}/appeal")
def appeal(
    request_id: DbId,
    body: AppealIn,
    request: Request,
    user: User = Depends(api_user(Permission.REQUEST)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Appeal a rejection, once."""
    req = requests.appeal(
        session, user, requests.get_request(session, request_id), body.text, ip=client_ip(request)
    )
    out = requests.request_record(req)
    session.commit()
    return out


@router.get("/grants")
def my_grants(
    user: User = Depends(api_user(Permission.BROWSE)), session: Session = Depends(db_session)
) -> list[dict[str, Any]]:
    """My grants, newest first."""
    return [grants.grant_record(g) for g in grants.list_grants(session, user=user)]


@router.get("/review")
def review_queue(
    state: str = "pending",
    release: str = "",
    q: str = "",
    limit: Limit = 200,
    offset: Offset = 0,
    user: User = Depends(api_user(Permission.REVIEW)),
    session: Session = Depends(db_session),
) -> list[dict[str, Any]]:
    """Requests for reviewers, filtered."""
    chosen = catalogue.get_release(session, release) if release else None
    return [
        requests.request_record(r)
        for r in requests.review_queue(
            session, state=state or None, release=chosen, search=q, limit=limit, offset=offset
        )
    ]


@router.post("/review/decisions")
def decide(
    body: DecisionIn,
    request: Request,
    user: User = Depends(api_user(Permission.REVIEW)),
    session: Session = Depends(db_session),
) -> list[dict[str, Any]]:
    """Approve or reject requests; each is reported (a reviewer's own request is refused)."""
    outcomes = requests.decide_many(
        session,
        body.request_ids,
        approve=body.approve,
        reviewer=user,
        actor=user.email,
        reason=body.reason,
        ip=client_ip(request),
        base_url=get_services(request).settings.base_url,
        mode=body.mode,
    )
    commit_and_deliver(request, session)
    return [{"request_id": o.request_id, "state": o.state, "error": o.error} for o in outcomes]


@router.post("/releases/{name}/{version}/circle")
def set_circle(
    name: str,
    version: str,
    body: CircleIn,
    request: Request,
    user: User = Depends(api_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Set a release's circle; narrowing revokes every grant outside it."""
    change = circles.set_circle(
        session,
        catalogue.get_release(session, f"{name}@{version}"),
        body.circle,
        reason=body.reason,
        actor=user.email,
        ip=client_ip(request),
    )
    commit_and_deliver(request, session)
    return {
        "release": change.release,
        "from": change.before,
        "to": change.after,
        "revoked": change.revoked,
    }


@router.get("/releases/{name}/{version}/policy")
def get_policy(
    name: str,
    version: str,
    user: User = Depends(api_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """A release's request form, auto-approval rules and grant lifetime."""
    release = catalogue.get_release(session, f"{name}@{version}")
    return policy.policy_record(release, policy.get_policy(session, release))


@router.put("/releases/{name}/{version}/policy")
def set_policy(
    name: str,
    version: str,
    body: PolicyIn,
    request: Request,
    user: User = Depends(api_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Change a release's request form, auto-approval rules or grant lifetime (audited)."""
    release = catalogue.get_release(session, f"{name}@{version}")
    changed = policy.set_policy(
        session,
        release,
        fields=body.fields,
        rules=body.rules,
        grant_days=body.grant_days,
        actor=user.email,
        ip=client_ip(request),
    )
    out = policy.policy_record(release, changed)
    session.commit()
    return out

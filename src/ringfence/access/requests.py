"""Access requests: submitting, reviewing, appealing (the form and rules: `policy`).

A person has at most one request per release. Submitting again while it is pending or
approved returns it unchanged (idempotent); a rejected request may be appealed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from ringfence.access.circles import admits
from ringfence.access.grants import check_days, issue_grant, open_institution_grant
from ringfence.access.licences import accept_licence
from ringfence.access.models import AccessPolicy, AccessRequest
from ringfence.access.policy import check_answers, get_policy, matching_rule
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Model, Release
from ringfence.db import utcnow
from ringfence.decisions import check_reason
from ringfence.errors import Conflict, InvalidInput, NotFound, PermissionDenied, RingfenceError
from ringfence.mail import messages
from ringfence.mail import services as mail

REQUEST_STATES = ("pending", "approved", "rejected", "expired", "revoked")
#: requests one bulk decision may name
MAX_BULK = 1000


def get_request(session: Session, request_id: int) -> AccessRequest:
    """A request by id, or NotFound."""
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound(f"no access request {request_id}", hint="see `ringfence grants requests`")
    return req


def find_request(session: Session, user: User, release: Release) -> AccessRequest | None:
    """The user's request for the release, if any."""
    return session.scalars(
        select(AccessRequest).where(
            AccessRequest.user_id == user.id, AccessRequest.release_id == release.id
        )
    ).first()


def submit_request(
    session: Session,
    user: User,
    release: Release,
    answers: Mapping[str, Any],
    *,
    licence_sha256: str | None = None,
    via: str = "web",
    ip: str | None = None,
    user_agent: str | None = None,
    base_url: str = "",
) -> AccessRequest:
    """Ask for a release; rules may approve it at once. Idempotent while pending or approved."""
    if not user.email_verified:
        raise PermissionDenied(
            "verify your email address first", hint="open the link we mailed you"
        )
    if not admits(session, release, user):
        raise PermissionDenied(
            f"{release.ref} is limited to the {release.circle} circle",
            hint="it is not open to requests from outside that circle",
        )
    existing = find_request(session, user, release)
    if existing is not None and existing.state in ("pending", "approved"):
        return existing
    if existing is not None and existing.state == "rejected":
        hint = "you may appeal once" if existing.appeal is None else "the decision is final"
        raise Conflict(f"your request was rejected: {existing.reason}", hint=hint)
    policy = get_policy(session, release)
    checked = check_answers(policy.fields, answers)
    if licence_sha256:
        accept_licence(
            session, user, release, text_sha256=licence_sha256, ip=ip, user_agent=user_agent
        )
    if existing is None:
        req = AccessRequest(user_id=user.id, release_id=release.id, user=user)
        session.add(req)
    else:  # expired or revoked: asking again starts a fresh review
        req = existing
    req.state, req.answers, req.via, req.reason = "pending", checked, via, ""
    req.decided_by = req.decided_at = req.appeal = req.appealed_at = None
    req.created_at = utcnow()
    session.flush()
    record(
        session,
        EventTag.Access.RequestSubmitted,
        actor=user.email,
        ip=ip,
        subject=f"release:{release.ref}",
        payload={"request_id": req.id, "via": via},
    )
    org_grant = open_institution_grant(session, user, release)
    rule = matching_rule(session, policy.rules, user)
    if release.circle == "public":
        rule = "public"
    if org_grant is not None or rule is not None:
        by = "rule:institution" if org_grant is not None else f"rule:{rule}"
        _approve(
            session,
            req,
            release,
            actor=by,
            reason="approved automatically",
            ip=ip,
            base_url=base_url,
            policy=policy,
            org_grant=org_grant,
        )
    else:
        mail.queue(
            session,
            user.email,
            messages.request_received(release=release.ref, base_url=base_url),
        )
    return req


def _approve(
    session: Session,
    req: AccessRequest,
    release: Release,
    *,
    actor: str,
    reason: str,
    ip: str | None,
    base_url: str,
    policy: AccessPolicy | None = None,
    org_grant: Any = None,
    days: int | None = None,
    mode: str | None = None,
) -> None:
    policy = policy or get_policy(session, release)
    until = None
    if org_grant is not None:
        until = min(org_grant.expires_at, utcnow() + timedelta(days=policy.grant_days))
    issue_grant(
        session,
        req.user,
        release,
        via="institution" if org_grant else "request",
        granted_by=actor,
        days=days or policy.grant_days,
        request=req,
        institution_grant=org_grant,
        expires_at=until,
        ip=ip,
        mode=mode,
    )
    req.state, req.reason, req.decided_by, req.decided_at = "approved", reason, actor, utcnow()
    record(
        session,
        EventTag.Access.RequestApproved,
        actor=actor,
        subject=f"release:{release.ref}",
        ip=ip,
        payload={"request_id": req.id, "user": req.user.email, "reason": reason},
    )
    licence = release.licence
    mail.queue(
        session,
        req.user.email,
        messages.request_approved(
            release=release.ref,
            licence=licence.ref if licence else None,
            release_url=f"{base_url}/models/{release.model.name}/{release.version}",
        ),
    )


def decide(
    session: Session,
    req: AccessRequest,
    *,
    approve: bool,
    reviewer: User | None,
    actor: str,
    reason: str = "",
    days: int | None = None,
    ip: str | None = None,
    base_url: str = "",
    mode: str | None = None,
) -> AccessRequest:
    """Approve or reject a pending request; a reviewer never decides on their own request.

    `reviewer` is None for the admin CLI (the operator of the server). Rejections need a
    reason; the requester reads it, and may appeal once. `mode` "hosted" approves inference
    through the endpoint only (None: the grant's current mode, download for a new one).
    """
    reason = check_reason(reason, required=not approve)
    if reviewer is not None:
        if reviewer.role not in ("admin", "reviewer"):
            raise PermissionDenied(f"{reviewer.email} is not a reviewer")
        if reviewer.id == req.user_id:
            raise PermissionDenied(
                "you cannot decide on your own request", hint="ask another reviewer"
            )
    target = "approved" if approve else "rejected"
    if req.state == target:
        return req
    if req.state != "pending":
        raise Conflict(f"request {req.id} is {req.state}, not pending")
    release = req.release
    if approve:
        if not admits(session, release, req.user):
            raise InvalidInput(
                f"{req.user.email} is outside the {release.circle} circle of {release.ref}",
                hint="reject the request, or widen the release first",
            )
        if days is not None:
            check_days(days)
        _approve(
            session,
            req,
            release,
            actor=actor,
            reason=reason,
            ip=ip,
            base_url=base_url,
            days=days,
            mode=mode,
        )
        return req
    req.state, req.reason, req.decided_by, req.decided_at = "rejected", reason, actor, utcnow()
    record(
        session,
        EventTag.Access.RequestRejected,
        actor=actor,
        subject=f"release:{release.ref}",
        ip=ip,
        payload={"request_id": req.id, "user": req.user.email, "reason": reason},
    )
    mail.queue(
        session,
        req.user.email,
        messages.request_rejected(
            release=release.ref, reason=reason, may_appeal=req.appeal is None, base_url=base_url
        ),
    )
    return req


def bulk_action(action: str) -> bool:
    """Whether a review form's action approves ("approve") or rejects ("reject")."""
    if action not in ("approve", "reject"):
        raise InvalidInput("choose approve or reject")
    return action == "approve"


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk decision did to one request."""

    request_id: int
    state: str
    error: str | None = None


def decide_many(
    session: Session,
    request_ids: list[int],
    *,
    approve: bool,
    reviewer: User | None,
    actor: str,
    reason: str = "",
    ip: str | None = None,
    base_url: str = "",
    mode: str | None = None,
) -> list[BulkOutcome]:
    """Decide several requests; one that cannot be decided is reported and the rest go on.

    The one check of a bulk decision, for the review page and the API alike: at least one
    and at most MAX_BULK requests, and a reason when rejecting.
    """
    if not request_ids:
        raise InvalidInput("tick at least one request")
    if len(request_ids) > MAX_BULK:
        raise InvalidInput(f"decide at most {MAX_BULK} requests at once")
    check_reason(reason, required=not approve)
    outcomes = []
    for request_id in dict.fromkeys(request_ids):
        try:
            with session.begin_nested():
                req = get_request(session, request_id)
                decide(
                    session,
                    req,
                    approve=approve,
                    reviewer=reviewer,
                    actor=actor,
                    reason=reason,
                    ip=ip,
                    base_url=base_url,
                    mode=mode,
                )
            outcomes.append(BulkOutcome(request_id, req.state))
        except RingfenceError as exc:
            outcomes.append(BulkOutcome(request_id, "unchanged", exc.diagnostics()))
    return outcomes


def appeal(
    session: Session, user: User, req: AccessRequest, text: str, *, ip: str | None = None
) -> AccessRequest:
    """Appeal a rejection once: the request goes back to the queue with the appeal attached."""
    if req.user_id != user.id:
        raise NotFound(f"no access request {req.id}")
    if req.state != "rejected":
        raise Conflict(f"only a rejected request can be appealed; this one is {req.state}")
    if req.appeal is not None:
        raise Conflict("you already appealed this decision", hint="the decision is final")
    text = check_reason(text, required=True)
    req.appeal, req.appealed_at, req.state = text, utcnow(), "pending"
    record(
        session,
        EventTag.Access.RequestAppealed,
        actor=user.email,
        ip=ip,
        subject=f"release:{req.release.ref}",
        payload={"request_id": req.id, "appeal": text},
    )
    return req


def review_queue(
    session: Session,
    *,
    state: str | None = "pending",
    release: Release | None = None,
    search: str = "",
    limit: int = 200,
    offset: int = 0,
) -> list[AccessRequest]:
    """Requests for reviewers, oldest first, filtered by state, release and requester."""
    if state and state not in REQUEST_STATES:
        raise InvalidInput(f"state: use one of {', '.join(REQUEST_STATES)}")
    query = (
        select(AccessRequest)
        .join(User, AccessRequest.user_id == User.id)
        .options(
            selectinload(AccessRequest.user).selectinload(User.institution),
            selectinload(AccessRequest.release).selectinload(Release.model),
        )
        .order_by(AccessRequest.created_at, AccessRequest.id)
        .limit(min(limit, 1000))
        .offset(offset)
    )
    if state:
        query = query.where(AccessRequest.state == state)
    if release is not None:
        query = query.where(AccessRequest.release_id == release.id)
    if search.strip():
        pattern = f"%{search.strip().lower()}%"
        query = query.where(or_(User.email.like(pattern), User.name.like(pattern)))
    return list(session.scalars(query))


def user_requests(session: Session, user: User) -> list[AccessRequest]:
    """A person's requests, newest first."""
    return list(
        session.scalars(
            select(AccessRequest)
            .where(AccessRequest.user_id == user.id)
            .options(selectinload(AccessRequest.release).selectinload(Release.model))
            .order_by(AccessRequest.created_at.desc())
        )
    )


def releases_with_requests(session: Session) -> list[Release]:
    """Releases for the queue's filter."""
    return list(session.scalars(select(Release).join(Model).order_by(Model.name, Release.version)))


def request_record(req: AccessRequest) -> dict[str, Any]:
    """An access request as one flat record (the API and the CLI show the same fields)."""
    return {
        "id": req.id,
        "release": req.release.ref,
        "user": req.user.email,
        "state": req.state,
        "reason": req.reason,
        "appeal": req.appeal,
        "answers": req.answers,
        "via": req.via,
        "created_at": req.created_at.isoformat(timespec="seconds"),
        "decided_at": req.decided_at.isoformat(timespec="seconds") if req.decided_at else None,
    }

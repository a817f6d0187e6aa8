"""Access requests: the per-release form and rules, submitting, reviewing, appealing.

A person has at most one request per release. Submitting again while it is pending or
approved returns it unchanged (idempotent); a rejected request may be appealed once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from ringfence.access import mail
from ringfence.access.accounts import DOMAIN, email_domain
from ringfence.access.circles import admits, check_reason, has_active_nda
from ringfence.access.countries import COUNTRIES
from ringfence.access.grants import (
    DEFAULT_GRANT_DAYS,
    check_days,
    issue_grant,
    open_institution_grant,
)
from ringfence.access.licences import accept_licence
from ringfence.access.models import AccessPolicy, AccessRequest, User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Model, Release
from ringfence.db import utcnow
from ringfence.errors import Conflict, InvalidInput, NotFound, PermissionDenied, RingfenceError

FIELD_TYPES = ("text", "select", "checkbox", "country", "date")
RULE_KINDS = ("staff", "email_domain", "partner_nda")
REQUEST_STATES = ("pending", "approved", "rejected", "expired", "revoked")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_ANSWER = 500

DEFAULT_FIELDS: list[dict[str, Any]] = [
    {"name": "affiliation", "label": "Affiliation", "type": "text", "required": True},
    {"name": "country", "label": "Country", "type": "country", "required": True},
    {
        "name": "intended_use",
        "label": "Intended use",
        "type": "select",
        "required": True,
        "options": ["Research", "Education", "Evaluation or red-teaming", "Other"],
    },
    {
        "name": "details",
        "label": "What will you do with the model?",
        "type": "text",
        "required": False,
    },
    {
        "name": "no_redistribution",
        "label": "I will not share the weights with anyone",
        "type": "checkbox",
        "required": True,
    },
]
DEFAULT_RULES: list[dict[str, Any]] = [{"kind": "staff"}]


def check_fields(fields: list[Any]) -> list[dict[str, Any]]:
    """Validate a form definition; returns it normalised."""
    if not isinstance(fields, list) or len(fields) > 30:
        raise InvalidInput("fields: give a list of at most 30 fields")
    seen: set[str] = set()
    result = []
    for i, f in enumerate(fields):
        if not isinstance(f, dict):
            raise InvalidInput(f"fields[{i}]: each field is an object")
        name, kind = str(f.get("name", "")), str(f.get("type", ""))
        if not FIELD_NAME.match(name) or name in seen:
            raise InvalidInput(f"fields[{i}].name: {name!r} is not a unique snake_case name")
        if kind not in FIELD_TYPES:
            raise InvalidInput(f"fields[{i}].type: use one of {', '.join(FIELD_TYPES)}")
        label = str(f.get("label") or name)[:200]
        field: dict[str, Any] = {
            "name": name,
            "label": label,
            "type": kind,
            "required": bool(f.get("required", False)),
        }
        if kind == "select":
            options = f.get("options")
            if not isinstance(options, list) or not 1 <= len(options) <= 50:
                raise InvalidInput(f"fields[{i}].options: a select needs 1 to 50 options")
            field["options"] = [str(o)[:100] for o in options]
        seen.add(name)
        result.append(field)
    return result


def check_rules(rules: list[Any]) -> list[dict[str, Any]]:
    """Validate auto-approval rules; returns them normalised."""
    if not isinstance(rules, list):
        raise InvalidInput("rules: give a list")
    result = []
    for i, r in enumerate(rules):
        kind = r.get("kind") if isinstance(r, dict) else None
        if kind not in RULE_KINDS:
            raise InvalidInput(f"rules[{i}].kind: use one of {', '.join(RULE_KINDS)}")
        rule: dict[str, Any] = {"kind": kind}
        if kind == "email_domain":
            domains = sorted({str(d).strip().lower().lstrip("@") for d in r.get("domains") or []})
            if not domains or not all(DOMAIN.match(d) for d in domains):
                raise InvalidInput(f"rules[{i}].domains: give email domains, e.g. uni.example")
            rule["domains"] = domains
        result.append(rule)
    return result


def get_policy(session: Session, release: Release) -> AccessPolicy:
    """The release's form, rules and grant lifetime (defaults when none was set)."""
    policy = session.get(AccessPolicy, release.id)
    if policy is None:
        policy = AccessPolicy(
            release_id=release.id,
            fields=DEFAULT_FIELDS,
            rules=DEFAULT_RULES,
            grant_days=DEFAULT_GRANT_DAYS,
        )
    return policy


def set_policy(
    session: Session,
    release: Release,
    *,
    fields: list[Any] | None = None,
    rules: list[Any] | None = None,
    grant_days: int | None = None,
    actor: str,
) -> AccessPolicy:
    """Change a release's request form, auto-approval rules or grant lifetime."""
    current = get_policy(session, release)
    policy = session.get(AccessPolicy, release.id)
    if policy is None:
        policy = AccessPolicy(
            release_id=release.id,
            fields=list(current.fields),
            rules=list(current.rules),
            grant_days=current.grant_days,
        )
        session.add(policy)
    if fields is not None:
        policy.fields = check_fields(fields)
    if rules is not None:
        policy.rules = check_rules(rules)
    if grant_days is not None:
        policy.grant_days = check_days(grant_days)
    policy.updated_at = utcnow()
    session.flush()
    record(
        session,
        EventTag.Access.PolicyChanged,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={"fields": policy.fields, "rules": policy.rules, "grant_days": policy.grant_days},
    )
    return policy


def check_answers(fields: list[dict[str, Any]], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate answers against the form; every message names the field's label."""
    answers: dict[str, Any] = {}
    for f in fields:
        name, label, kind = f["name"], f["label"], f["type"]
        value = raw.get(name)
        if kind == "checkbox":
            checked = value in (True, "on", "true", "1", "yes")
            if f["required"] and not checked:
                raise InvalidInput(f"{label}: tick this box to continue")
            answers[name] = checked
            continue
        text = "" if value is None else str(value).strip()
        if not text:
            if f["required"]:
                raise InvalidInput(f"{label}: this field is required")
            continue
        if len(text) > MAX_ANSWER:
            raise InvalidInput(f"{label}: use at most {MAX_ANSWER} characters")
        if kind == "select" and text not in f["options"]:
            raise InvalidInput(f"{label}: choose one of the listed options")
        if kind == "country" and text.upper() not in COUNTRIES:
            raise InvalidInput(f"{label}: choose a country from the list")
        if kind == "date":
            try:
                date.fromisoformat(text)
            except ValueError as exc:
                raise InvalidInput(f"{label}: give a date as YYYY-MM-DD") from exc
        answers[name] = text.upper() if kind == "country" else text
    return answers


def matching_rule(session: Session, rules: list[dict[str, Any]], user: User) -> str | None:
    """The kind of the first auto-approval rule `user` meets, if any."""
    for rule in rules:
        kind = str(rule["kind"])
        if kind == "staff" and user.is_lab:
            return kind
        if kind == "partner_nda" and has_active_nda(session, user.institution_id, utcnow()):
            return kind
        if kind == "email_domain" and user.email_verified:
            domain = email_domain(user.email)
            if any(domain == d or domain.endswith("." + d) for d in rule.get("domains", [])):
                return kind
    return None


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
            f"Your request for {release.ref} was received",
            f"We received your request for {release.ref}. A reviewer will decide on it; "
            f"you will get a mail. Its state: {base_url}/account\n",
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
    step = f" Accept the licence {licence.ref} on the release page first." if licence else ""
    mail.queue(
        session,
        req.user.email,
        f"Access to {release.ref} approved",
        f"Your request for {release.ref} was approved.{step}\n\n"
        f"{base_url}/models/{release.model.name}/{release.version}\n",
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
) -> AccessRequest:
    """Approve or reject a pending request; a reviewer never decides on their own request.

    `reviewer` is None for the admin CLI (the operator of the server). Rejections need a
    reason; the requester reads it, and may appeal once.
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
            session, req, release, actor=actor, reason=reason, ip=ip, base_url=base_url, days=days
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
    appeal = (
        f"\nIf you think this is wrong you may appeal once: {base_url}/account\n"
        if req.appeal is None
        else "\nThis decision on your appeal is final.\n"
    )
    mail.queue(
        session,
        req.user.email,
        f"Your request for {release.ref} was rejected",
        f"Your request for {release.ref} was rejected.\n\nReason: {reason}\n{appeal}",
    )
    return req


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
) -> list[BulkOutcome]:
    """Decide several requests; one that cannot be decided is reported and the rest go on."""
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

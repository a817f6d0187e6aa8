"""A release's access policy: the request form, the auto-approval rules, the grant lifetime.

Without a policy of its own a release asks the default form and approves the lab's staff at
once; `set_policy` changes any part and records `PolicyChanged`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from ringfence.access.countries import COUNTRIES
from ringfence.access.grants import DEFAULT_GRANT_DAYS, check_days
from ringfence.access.models import AccessPolicy
from ringfence.accounts.models import User
from ringfence.accounts.services import DOMAIN, email_domain
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import utcnow
from ringfence.errors import InvalidInput
from ringfence.organisations.services import has_active_nda

FIELD_TYPES = ("text", "select", "checkbox", "country", "date")
RULE_KINDS = ("staff", "email_domain", "partner_nda")
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
    ip: str | None = None,
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
        ip=ip,
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


def policy_record(release: Release, policy: AccessPolicy) -> dict[str, Any]:
    """A release's policy as one record (the API and the CLI show the same fields)."""
    return {
        "release": release.ref,
        "fields": policy.fields,
        "rules": policy.rules,
        "grant_days": policy.grant_days,
    }


def parse_fields(text: str) -> list[Any]:
    """A request form given as JSON text (a list of field objects), or InvalidInput."""
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"fields: not JSON ({exc.msg} at line {exc.lineno})") from exc
    return check_fields(fields)


def parse_rule(text: str) -> dict[str, Any]:
    """One auto-approval rule as typed: `staff`, `partner_nda` or `email_domain:a.example,b.org`."""
    kind, _, rest = text.strip().partition(":")
    rule: dict[str, Any] = {"kind": kind.strip()}
    if rest.strip():
        rule["domains"] = [
            d.strip().lower() for d in rest.replace(" ", ",").split(",") if d.strip()
        ]
    return check_rules([rule])[0]


def rule_text(rule: dict[str, Any]) -> str:
    """A rule as `parse_rule` reads it."""
    domains = rule.get("domains")
    return f"{rule['kind']}:{','.join(domains)}" if domains else str(rule["kind"])

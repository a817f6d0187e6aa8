"""Access services: requests, review, policies, licences, grants and narrowing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ringfence.access import circles, expiry, grants, licences, policy, requests
from ringfence.access.models import AccessRequest, Grant
from ringfence.accounts.models import User
from ringfence.audit.models import AuditEvent
from ringfence.audit.services import verify
from ringfence.catalogue import services as catalogue
from ringfence.db import utcnow
from ringfence.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    PermissionDenied,
)
from ringfence.mail.models import Mail
from ringfence.wiring import Services
from tests.fixtures_access import make_partner, make_release, make_user

ANSWERS = {
    "affiliation": "Uni",
    "country": "FR",
    "intended_use": "Research",
    "no_redistribution": "on",
}


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as s:
        yield s
        s.commit()


def _mails(session: Session, to: str) -> list[Mail]:
    return list(session.scalars(select(Mail).where(Mail.to == to).order_by(Mail.id)))


def test_request_review_appeal_and_download(session: Session, services: Services) -> None:
    release = make_release(session)
    researcher = make_user(session, "r@uni.example")
    reviewer = make_user(session, "rev@lab.example", role="reviewer", secrets=services.secrets)
    req = requests.submit_request(session, researcher, release, ANSWERS)
    assert req.state == "pending"
    # Idempotent: asking again returns the same pending request.
    assert requests.submit_request(session, researcher, release, {}) is req
    with pytest.raises(InvalidInput, match="reason"):
        requests.decide(session, req, approve=False, reviewer=reviewer, actor=reviewer.email)
    with pytest.raises(InvalidInput, match="500"):
        requests.decide(session, req, approve=False, reviewer=reviewer, actor="x", reason="x" * 501)
    requests.decide(
        session,
        req,
        approve=False,
        reviewer=reviewer,
        actor=reviewer.email,
        reason="tell us more about your project",
    )
    with pytest.raises(Conflict, match="tell us more"):
        requests.submit_request(session, researcher, release, ANSWERS)
    requests.appeal(session, researcher, req, "I study tokenisers at Uni")
    with pytest.raises(Conflict):
        requests.appeal(session, researcher, req, "again")
    requests.decide(session, req, approve=True, reviewer=reviewer, actor=reviewer.email)
    with pytest.raises(PermissionDenied, match="accept the licence"):
        grants.authorise_download(session, researcher, release)
    assert release.licence is not None
    licences.accept_licence(
        session,
        researcher,
        release,
        text_sha256=release.licence.sha256,
        ip="1.1.1.1",
        user_agent="pytest",
    )
    grant = grants.authorise_download(session, researcher, release)
    assert grant.state == "active" and grant.expires_at > utcnow() + timedelta(days=364)
    # A new licence version makes the holder accept again.
    newer = catalogue.add_licence(session, "research-only", "Research", "new text", "test")
    licences.set_release_licence(session, release, newer, actor="test", base_url="")
    with pytest.raises(PermissionDenied, match="research-only@2"):
        grants.authorise_download(session, researcher, release)
    with pytest.raises(Conflict):
        licences.accept_licence(
            session, researcher, release, text_sha256="0" * 64, ip=None, user_agent=None
        )


def test_reviewer_cannot_approve_own_request(session: Session, services: Services) -> None:
    release = make_release(session)
    reviewer = make_user(session, "rev@lab.example", role="reviewer", secrets=services.secrets)
    req = requests.submit_request(session, reviewer, release, ANSWERS)
    with pytest.raises(PermissionDenied, match="own request"):
        requests.decide(session, req, approve=True, reviewer=reviewer, actor=reviewer.email)


def test_form_fields_validate(session: Session) -> None:
    release = make_release(session)
    user = make_user(session, "u@uni.example")
    for bad, message in (
        ({**ANSWERS, "country": "XX"}, "Country: choose"),
        ({**ANSWERS, "intended_use": "Mining"}, "Intended use"),
        ({k: v for k, v in ANSWERS.items() if k != "no_redistribution"}, "tick"),
        ({**ANSWERS, "affiliation": ""}, "Affiliation: this field is required"),
    ):
        with pytest.raises(InvalidInput, match=message):
            requests.submit_request(session, user, release, bad)
    policy.set_policy(session, release, fields=[{"name": "start", "type": "date"}], actor="t")
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        requests.submit_request(session, user, release, {"start": "tomorrow"})


def test_auto_approval_rules(session: Session) -> None:
    release = make_release(session)
    policy.set_policy(
        session,
        release,
        rules=[{"kind": "email_domain", "domains": ["trusted.example"]}, {"kind": "partner_nda"}],
        actor="t",
    )
    trusted = make_user(session, "t@cs.trusted.example")
    partner = make_user(session, "p@partner.example", institution=make_partner(session))
    other = make_user(session, "o@else.example")
    assert requests.submit_request(session, trusted, release, ANSWERS).state == "approved"
    assert requests.submit_request(session, partner, release, ANSWERS).decided_by == (
        "rule:partner_nda"
    )
    assert requests.submit_request(session, other, release, ANSWERS).state == "pending"


def test_institution_grant_seats(session: Session) -> None:
    release = make_release(session)
    inst = make_partner(session)
    grants.add_institution_grant(session, inst, release, seats=1, actor="t")
    first = make_user(session, "a@partner.example", institution=inst)
    second = make_user(session, "b@partner.example", institution=inst)
    assert requests.submit_request(session, first, release, ANSWERS).state == "approved"
    assert requests.submit_request(session, second, release, ANSWERS).state == "pending"


def test_narrowing_revokes_outside_grants_and_mails_them(session: Session) -> None:
    release = make_release(session)
    partner = make_user(session, "p@partner.example", institution=make_partner(session))
    staff = make_user(session, "s@lab.example", role="staff")
    outsider = make_user(session, "o@uni.example")
    for user in (partner, staff, outsider):
        grants.add_grant(session, release, user, actor="test")
    change = circles.set_circle(session, release, "partners", reason="risk review", actor="admin")
    assert change.revoked == 1 and release.circle == "partners"
    states = dict(session.execute(select(Grant.user_id, Grant.state)).tuples().all())
    assert states == {partner.id: "active", staff.id: "active", outsider.id: "revoked"}
    assert "risk review" in _mails(session, outsider.email)[-1].body
    with pytest.raises(PermissionDenied, match="revoked: risk review"):
        grants.authorise_download(session, outsider, release)
    # Widening grants nothing.
    circles.set_circle(session, release, "public", actor="admin")
    assert session.get(Grant, 3) is not None
    assert states[outsider.id] == "revoked"
    assert session.scalar(select(func.count()).where(Grant.state == "active")) == 2
    with pytest.raises(InvalidInput, match="circle"):
        circles.set_circle(session, release, "everyone", actor="admin")
    assert verify(session).ok


def test_authorise_download_reasons(session: Session) -> None:
    release = make_release(session, licensed=False)
    user = make_user(session, "u@uni.example")
    with pytest.raises(AuthenticationRequired):
        grants.authorise_download(session, None, release)
    with pytest.raises(PermissionDenied, match="no access grant"):
        grants.authorise_download(session, user, release)
    grant = grants.add_grant(session, release, user, actor="t")
    assert grants.authorise_download(session, user, release) is grant
    grant.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(PermissionDenied, match="expired"):
        grants.authorise_download(session, user, release)
    assert len(expiry.expire_grants(session)) == 1
    grants.issue_grant(session, user, release, via="direct", granted_by="t")
    release.circle = "partners"
    with pytest.raises(PermissionDenied, match="partners circle"):
        grants.authorise_download(session, user, release)
    with pytest.raises(InvalidInput, match="outside"):
        grants.add_grant(session, release, make_user(session, "x@uni.example"), actor="t")


def test_unverified_cannot_request_and_outsiders_cannot_see_in_house(session: Session) -> None:
    release = make_release(session, circle="in-house")
    with pytest.raises(PermissionDenied, match="verify"):
        requests.submit_request(
            session, make_user(session, "n@x.example", verified=False), release, ANSWERS
        )
    with pytest.raises(PermissionDenied, match="in-house"):
        requests.submit_request(session, make_user(session, "m@x.example"), release, ANSWERS)
    staff = make_user(session, "s@lab.example", role="staff")
    assert requests.submit_request(session, staff, release, ANSWERS).state == "approved"


def test_bulk_decisions_report_each(session: Session, services: Services) -> None:
    release = make_release(session)
    reviewer = make_user(session, "rev@lab.example", role="reviewer", secrets=services.secrets)
    ids = [
        requests.submit_request(session, make_user(session, f"u{i}@x.example"), release, ANSWERS).id
        for i in range(3)
    ]
    own = requests.submit_request(session, reviewer, release, ANSWERS)
    assert own.state == "approved"  # staff rule (reviewers are lab)
    outcomes = requests.decide_many(
        session, [*ids, own.id, 999], approve=True, reviewer=reviewer, actor=reviewer.email
    )
    assert [o.state for o in outcomes] == ["approved"] * 3 + ["unchanged", "unchanged"]
    assert (
        session.scalar(
            select(func.count()).select_from(AccessRequest).where(AccessRequest.state == "approved")
        )
        == 4
    )
    assert session.scalar(select(func.count()).select_from(AuditEvent)) > 5
    assert session.scalar(select(func.count()).select_from(User)) == 4

"""What requesters and reviewers are told: a requester's page shows each request's timeline
(submitted, decisions with reasons, the appeal, what comes next) instead of a bare state; a
second rejection is final and asking again shows its reason; reviewers hear of new requests
by mail (real SMTP), each time or as a daily digest, on a test-controlled clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ringfence.access import requests as access_requests
from ringfence.accounts.models import User
from ringfence.accounts.services import start_session
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.downstream import requests as notices
from ringfence.errors import Conflict
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.fixtures_access import Inbox, make_release, make_user

ANSWERS = {
    "affiliation": "University of Examples",
    "country": "FR",
    "intended_use": "Research",
    "no_redistribution": True,
}


@pytest.fixture
def lab(home: Path, smtp_server: tuple[int, Inbox]) -> Services:
    services = build(Settings(home=home, mail_backend="smtp", smtp_port=smtp_server[0]))
    services.prepare()
    with transaction(services.sessions) as session:
        make_release(session, "tiny", "1.0", circle="research")
        make_user(session, "rev@lab.example", role="reviewer", secrets=services.secrets)
        make_user(session, "ada@uni.example")
        make_user(session, "bob@uni.example")
    return services


def _user(session: object, email: str) -> User:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    return session.scalars(select(User).where(User.email == email)).one()


def _ask(services: Services, email: str) -> None:
    with transaction(services.sessions) as session:
        access_requests.submit_request(
            session, _user(session, email), catalogue.get_release(session, "tiny@1.0"), ANSWERS
        )


def _reject(services: Services, email: str, reason: str) -> None:
    with transaction(services.sessions) as session:
        req = access_requests.find_request(
            session, _user(session, email), catalogue.get_release(session, "tiny@1.0")
        )
        assert req is not None
        rev = _user(session, "rev@lab.example")
        access_requests.decide(
            session, req, approve=False, reviewer=rev, actor=rev.email, reason=reason
        )


def test_requester_sees_the_timeline_and_the_one_appeal_rule(lab: Services) -> None:
    _ask(lab, "ada@uni.example")
    _reject(lab, "ada@uni.example", "the affiliation could not be confirmed")
    with transaction(lab.sessions) as session:
        ada = _user(session, "ada@uni.example")
        req = access_requests.find_request(session, ada, catalogue.get_release(session, "tiny@1.0"))
        assert req is not None
        access_requests.appeal(session, ada, req, "here is my staff page")
    _reject(lab, "ada@uni.example", "still not confirmed")
    with transaction(lab.sessions) as session, pytest.raises(Conflict) as refused:
        access_requests.submit_request(
            session, _user(session, "ada@uni.example"), catalogue.get_release(session, "tiny@1.0"),
            ANSWERS,
        )  # fmt: skip
    assert "still not confirmed" in refused.value.diagnostics()
    assert "the decision is final" in refused.value.diagnostics()

    with transaction(lab.sessions) as session:
        cookie = start_session(session, _user(session, "ada@uni.example"), ip=None, user_agent=None)
    with TestClient(create_app(lab)) as client:
        page = client.get("/account/requests", headers={"Cookie": f"rf_session={cookie}"})
    assert page.status_code == 200
    text = page.text
    order = [
        text.index("<strong>submitted</strong>"),
        text.index("the affiliation could not be confirmed"),
        text.index("<strong>appealed</strong>: here is my staff page"),
        text.index("still not confirmed"),
    ]
    assert order == sorted(order)
    assert 'data-testid="timeline-next">the decision is final' in text
    assert "bob@uni.example" not in text and "rev@lab.example" not in text


def test_reviewers_hear_of_new_requests_each_time_or_daily(
    lab: Services, smtp_server: tuple[int, Inbox]
) -> None:
    inbox = smtp_server[1]
    _ask(lab, "ada@uni.example")
    now = utcnow()
    assert notices.notify_reviewers(lab, now) == 1
    assert "1 new access request to review" in inbox.to("rev@lab.example")[-1]["Subject"]
    assert "tiny@1.0: 1" in inbox.last_body("rev@lab.example")
    assert "ada@uni.example" not in inbox.last_body("rev@lab.example")
    assert notices.notify_reviewers(lab, now + timedelta(minutes=1)) == 0  # nothing new

    with transaction(lab.sessions) as session:
        notices.set_notice_mode(session, _user(session, "rev@lab.example"), "daily")
    _ask(lab, "bob@uni.example")
    assert notices.notify_reviewers(lab, now + timedelta(hours=1)) == 0  # the digest waits
    assert notices.notify_reviewers(lab, now + timedelta(hours=25)) == 1
    assert "(daily digest)" in inbox.to("rev@lab.example")[-1]["Subject"]
    assert len(inbox.to("rev@lab.example")) == 2

    with transaction(lab.sessions) as session:
        notices.set_notice_mode(session, _user(session, "rev@lab.example"), "off")
    _reject(lab, "bob@uni.example", "no")
    with transaction(lab.sessions) as session:
        bob = _user(session, "bob@uni.example")
        req = access_requests.find_request(session, bob, catalogue.get_release(session, "tiny@1.0"))
        assert req is not None
        access_requests.appeal(session, bob, req, "please")
    assert notices.notify_reviewers(lab, now + timedelta(days=3)) == 0  # off means off

"""When a base narrows: its hosted derivative is capped, its owner mailed (real SMTP), and a
signed webhook reaches a real receiver on loopback, which verifies the signature; webhooks
are retried with backoff from the database and can be redelivered."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ringfence.access import circles
from ringfence.access.hooks import WideningHeld
from ringfence.audit.models import AuditEvent
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.downstream import derivatives
from ringfence.downstream.derivatives import Registration
from ringfence.settings import Settings
from ringfence.webhooks import services as webhooks
from ringfence.webhooks.models import Delivery
from ringfence.wiring import Services, build
from tests.conftest import TINY_CODE, write_tiny_model
from tests.fixtures_access import Inbox, make_user
from tests.fixtures_downstream import Receiver, finetune, receiver

__all__ = ["receiver"]


@pytest.fixture
def world(
    home: Path, tmp_path: Path, smtp_server: tuple[int, Inbox], receiver: Receiver
) -> Services:
    """A base release and a hosted fine-tune of it, both research; Ada owns the fine-tune
    and listens on the receiver; an admin listens to every release."""
    services = build(
        Settings(
            home=home, mail_backend="smtp", smtp_port=smtp_server[0], webhooks_allow_insecure=True
        )
    )
    services.prepare()
    base_dir = write_tiny_model(tmp_path / "base")
    tuned_dir = finetune(base_dir, tmp_path / "tuned")
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        for name, directory in (("base", base_dir), ("chat", tuned_dir)):
            release = catalogue.publish(
                session, services.blobs, directory, model=name, version="1.0", fingerprint=TINY_CODE
            )
            release.circle = "research"
        session.flush()
        ada = make_user(session, "ada@uni.example")
        admin = make_user(session, "admin@lab.example", role="admin", secrets=services.secrets)
        derivatives.register(
            services,
            session,
            ada,
            Registration("ada/chat", "finetune", ["base@1.0"], hosted="chat@1.0"),
            by=admin,
        )
        base = catalogue.get_release(session, "base@1.0")
        mine = webhooks.subscribe(services, session, ada, f"{receiver.url}/ada", [], release=base)
        everything = webhooks.subscribe(services, session, admin, f"{receiver.url}/lab", [])
        receiver.secrets["/ada"] = webhooks.secret(services.secrets, mine.id)
        receiver.secrets["/lab"] = webhooks.secret(services.secrets, everything.id)
    return services


def test_narrowing_a_base_caps_mails_and_signs(
    world: Services, smtp_server: tuple[int, Inbox], receiver: Receiver
) -> None:
    services, inbox = world, smtp_server[1]
    with transaction(services.sessions) as session:
        derivative = derivatives.get_derivative(session, "ada/chat")
        assert derivative.lineage == "verified", derivative.lineage_note
        # Registered by hash alone: ringfence holds that file (chat's weights), so it checks it.
        chat = catalogue.get_release(session, "chat@1.0")
        digest = next(a.sha256 for a in chat.artifacts if a.format == "safetensors")
        mirror = derivatives.register(
            services,
            session,
            derivative.owner,
            Registration("ada/chat-mirror", "finetune", ["base@1.0"], weights_sha256=digest),
        )
        assert (mirror.lineage, mirror.hosted_release_id) == ("verified", None), mirror.lineage_note
        base = catalogue.get_release(session, "base@1.0")
        circles.set_circle(
            session, base, "partners", reason="risk review", actor="admin@lab.example"
        )
    services.mailer.deliver_pending(services.sessions)
    assert webhooks.deliver_due(services, utcnow()) >= 2

    with services.sessions() as session:
        assert catalogue.get_release(session, "chat@1.0").circle == "partners"
        tags = list(session.scalars(select(AuditEvent.tag).order_by(AuditEvent.seq)))
    assert "downstream:derivative:capped" in tags
    assert "downstream:derivative:noticed" in tags
    bodies = {
        " ".join(str(m["Subject"]).split()): str(m.get_payload(decode=True).decode())
        for m in inbox.to("ada@uni.example")
    }
    hosted = bodies["base@1.0, the base of ada/chat, was narrowed to the partners circle"]
    assert "ringfence hosts ada/chat, so it was narrowed to the same circle at once" in hosted
    mirror = bodies["base@1.0, the base of ada/chat-mirror, was narrowed to the partners circle"]
    assert "Your own releases of ada/chat-mirror should follow" in mirror

    # Ada's endpoint: the base's circle change, signed and verified, with no one's address.
    ada = receiver.at("/ada")
    assert [r.payload["type"] for r in ada] == ["circle.changed"]
    assert ada[0].verified and ada[0].headers["webhook-id"].startswith("msg_")
    assert ada[0].payload["data"] == {
        "release": "base@1.0",
        "from": "research",
        "to": "partners",
        "reason": "risk review",
        "revoked": 0,
        "audit_seq": ada[0].payload["data"]["audit_seq"],
    }
    # The lab's endpoint hears both releases narrow (the cap is a circle change too).
    lab = {(r.payload["data"]["release"], r.payload["type"]) for r in receiver.at("/lab")}
    assert {("base@1.0", "circle.changed"), ("chat@1.0", "circle.changed")} <= lab
    assert all(r.verified for r in receiver.received)
    assert all(b"@uni.example" not in r.body for r in receiver.received)

    # Capped means capped: the derivative may not widen past its base.
    with transaction(services.sessions) as session, pytest.raises(WideningHeld, match=r"base@1\.0"):
        circles.set_circle(
            session, catalogue.get_release(session, "chat@1.0"), "research", actor="admin"
        )


def test_retries_back_off_and_redelivery_keeps_the_id(world: Services, receiver: Receiver) -> None:
    services = world
    with transaction(services.sessions) as session:
        circles.set_circle(
            session, catalogue.get_release(session, "chat@1.0"), "partners", actor="admin"
        )
    receiver.fail_next = 1
    now = utcnow()
    assert webhooks.deliver_due(services, now) == 0  # the receiver answered 500
    with services.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
        assert delivery.next_attempt_at == now + webhooks.FIRST_BACKOFF
        first_id = delivery.message_id
    assert webhooks.deliver_due(services, now + timedelta(seconds=10)) == 0  # not due yet
    assert webhooks.deliver_due(services, now + timedelta(seconds=31)) == 1
    with transaction(services.sessions) as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.state, delivery.attempts) == ("delivered", 2)
        webhooks.redeliver(session, str(delivery.id), actor="admin@lab.example")
    assert webhooks.deliver_due(services, utcnow()) == 1
    ids = [r.headers["webhook-id"] for r in receiver.at("/lab")]
    assert ids == [first_id, first_id, first_id]
    assert [r.verified for r in receiver.at("/lab")] == [True, True, True]
    assert json.loads(receiver.at("/lab")[-1].body)["data"]["to"] == "partners"


def test_backoff_doubles_and_failure_is_final(world: Services, receiver: Receiver) -> None:
    assert [webhooks.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    services = world
    with transaction(services.sessions) as session:
        circles.set_circle(
            session, catalogue.get_release(session, "chat@1.0"), "partners", actor="admin"
        )
    receiver.fail_next = webhooks.MAX_ATTEMPTS
    now = utcnow()
    for _ in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver_due(services, now)
        now += timedelta(hours=3)  # past any backoff
    with services.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.state, delivery.attempts) == ("failed", webhooks.MAX_ATTEMPTS)
        failed = session.scalars(
            select(AuditEvent).where(AuditEvent.tag == "webhooks:delivery:failed")
        ).one()
    assert failed.payload["attempts"] == webhooks.MAX_ATTEMPTS


def test_a_base_licence_change_mails_owners_and_signs(
    world: Services, smtp_server: tuple[int, Inbox], receiver: Receiver
) -> None:
    from ringfence.access.licences import install_research_licence, set_release_licence

    services, inbox = world, smtp_server[1]
    with transaction(services.sessions) as session:
        licence = install_research_licence(session, actor="test")
        base = catalogue.get_release(session, "base@1.0")
        set_release_licence(session, base, licence, actor="admin@lab.example", base_url="")
    services.mailer.deliver_pending(services.sessions)
    webhooks.deliver_due(services, utcnow())
    mail = inbox.to("ada@uni.example")[-1]
    assert "The licence of base@1.0, the base of ada/chat, changed" in mail["Subject"]
    assert licence.ref in inbox.last_body("ada@uni.example")
    [message] = receiver.at("/ada")
    assert message.verified and message.payload["type"] == "licence.changed"
    assert message.payload["data"]["to"] == licence.ref


def test_delivery_log_page_redelivers(world: Services, receiver: Receiver) -> None:
    import hashlib
    import hmac

    from fastapi.testclient import TestClient

    from ringfence.accounts.models import User
    from ringfence.accounts.services import start_session
    from ringfence.web.app import create_app

    services = world
    with transaction(services.sessions) as session:
        circles.set_circle(
            session, catalogue.get_release(session, "chat@1.0"), "partners", actor="admin"
        )
    assert webhooks.deliver_due(services, utcnow()) == 1
    with transaction(services.sessions) as session:
        admin = session.scalars(select(User).where(User.role == "admin")).one()
        cookie = start_session(session, admin, ip=None, user_agent=None)
        delivery_id = session.scalars(select(Delivery.id)).one()
    csrf = hmac.new(services.secrets.derive("web:csrf"), cookie.encode(), hashlib.sha256)
    headers = {"Cookie": f"rf_session={cookie}"}
    with TestClient(create_app(services), follow_redirects=False) as client:
        page = client.get("/admin/webhooks", headers=headers)
        assert page.status_code == 200
        assert page.text.count('data-testid="delivery"') == 1 and "delivered" in page.text
        assert f"{receiver.url}/lab" in page.text
        r = client.post(
            "/admin/webhooks/redeliver",
            headers={**headers, "X-CSRF-Token": csrf.hexdigest()},
            data={"delivery": str(delivery_id)},
        )
        assert r.status_code == 303, r.text
    assert webhooks.deliver_due(services, utcnow()) == 1
    assert len(receiver.at("/lab")) == 2
    assert (
        receiver.at("/lab")[0].headers["webhook-id"] == receiver.at("/lab")[1].headers["webhook-id"]
    )

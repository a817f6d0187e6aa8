"""Staged release schedules from the command line: a step widens on its (test-chosen) date
only when nothing holds it, an open incident holds it, and
every step and hold is audited and mailed to the admins; plus the derivative and webhook
commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.audit.models import AuditEvent
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Release
from ringfence.db import transaction
from ringfence.downstream.models import ScheduleStep
from ringfence.incidents import services as incidents
from ringfence.mail.models import Mail
from ringfence.wiring import Services
from tests.conftest import CliRunner
from tests.fixtures_access import Inbox, make_release, make_user


@pytest.fixture
def lab(
    services: Services, smtp_server: tuple[int, Inbox], monkeypatch: pytest.MonkeyPatch
) -> Services:
    """A partners release, an admin and an outside member; mail goes to the test SMTP server."""
    monkeypatch.setenv("RINGFENCE_MAIL_BACKEND", "smtp")
    monkeypatch.setenv("RINGFENCE_SMTP_PORT", str(smtp_server[0]))
    with transaction(services.sessions) as session:
        make_release(session, "tiny", "1.0", circle="partners")
        make_user(session, "admin@lab.example", role="admin", secrets=services.secrets)
        make_user(session, "ada@uni.example")
    return services


def _tags(services: Services, tag: str) -> list[AuditEvent]:
    with services.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag)))


def _circle(services: Services) -> str:
    with services.sessions() as session:
        return session.scalars(select(Release.circle)).one()


LEAK = "https://leak.example/tiny"
ADMIN = "admin@lab.example"


def test_schedule_waits_for_its_date_and_holds_on_an_open_incident(
    lab: Services,
    cli: CliRunner,
    smtp_server: tuple[int, Inbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox = smtp_server[1]
    with transaction(lab.sessions) as session:
        incident_id = incidents.open_incident(
            session, kind="url", source=LEAK, release_ref="tiny@1.0", actor="admin@lab.example"
        ).id
    hold = f"incidents: incident {incident_id} (url {LEAK}) is open; close it to lift the hold"

    added = cli("schedule", "add", "tiny@1.0", "research", "--on", "2030-03-01", "--json")
    assert added.code == 0, added.err
    assert cli("schedule", "run", "--now", "2030-02-28T23:59Z", "--json").json() == []
    assert _circle(lab) == "partners"

    held = cli("schedule", "run", "--now", "2030-03-01T01:00Z", "--json")
    assert held.code == 0, held.err
    assert held.json() == [
        {
            "release": "tiny@1.0",
            "circle": "research",
            "outcome": "held",
            "reason": hold,
        }
    ]
    assert _circle(lab) == "partners"
    # Held again at the next run: still audited and mailed only once.
    assert cli("schedule", "run", "--now", "2030-03-02", "--json").json()[0]["outcome"] == "held"
    assert len(_tags(lab, "downstream:schedule:held")) == 1
    assert "held" in inbox.to("admin@lab.example")[-1]["Subject"]
    assert f"incident {incident_id} (url" in inbox.last_body("admin@lab.example")

    listed = cli("schedule", "list", "tiny@1.0", "--json").json()
    assert [(s["state"], s["held"]) for s in listed] == [("planned", hold)]

    with transaction(lab.sessions) as session:
        incident = session.get(incidents.Incident, incident_id)
        assert incident is not None
        incidents.close_incident(
            session, incident, resolution="a false alarm", actor="admin@lab.example"
        )
    taken = cli("schedule", "run", "--now", "2030-03-03", "--json").json()
    assert [t["outcome"] for t in taken] == ["taken"]
    assert _circle(lab) == "research"
    [event] = _tags(lab, "downstream:schedule:taken")
    assert event.actor == "schedule" and event.payload["circle"] == "research"
    assert "widened to the research circle" in inbox.to("admin@lab.example")[-1]["Subject"]
    # Done steps are not taken twice.
    assert cli("schedule", "run", "--now", "2030-04-01", "--json").json() == []


def test_a_step_two_workers_list_at_once_is_taken_once(
    lab: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A lists the due step; worker B lists it too and takes it before A goes on."""
    import threading
    from datetime import UTC, datetime

    from ringfence.downstream import schedules

    with transaction(lab.sessions) as session:
        release = catalogue.get_release(session, "tiny@1.0")
        schedules.plan(session, release, "research", datetime(2030, 3, 1, tzinfo=UTC), actor="test")
    listed = schedules._due
    others: list[schedules.StepOutcome] = []
    raced = threading.Event()

    def racing(session: Session, now: datetime) -> list[ScheduleStep]:
        steps = listed(session, now)
        if not raced.is_set():  # A has listed the step: B runs whole, on its own connection
            raced.set()
            worker = threading.Thread(target=lambda: others.extend(schedules.run_due(lab, now)))
            worker.start()
            worker.join()
        return steps

    monkeypatch.setattr(schedules, "_due", racing)
    mine = schedules.run_due(lab, datetime(2030, 3, 2, tzinfo=UTC))
    assert [o.outcome for o in others] == ["taken"]
    assert mine == []  # A found the step taken: nothing done twice
    assert _circle(lab) == "research"
    assert len(_tags(lab, "downstream:schedule:taken")) == 1
    assert len(_tags(lab, "access:circle:changed")) == 1
    with lab.sessions() as session:  # one notice queued to the admins, not two
        subjects = session.scalars(select(Mail.subject).where(Mail.to == ADMIN)).all()
    assert len([s for s in subjects if "widened" in s]) == 1


def test_schedule_refuses_what_is_no_widening(lab: Services, cli: CliRunner) -> None:
    refused = cli("schedule", "add", "tiny@1.0", "in-house", "--on", "2030-03-01")
    assert refused.code != 0 and "narrowing is done at once" in refused.err
    bad = cli("schedule", "add", "tiny@1.0", "research", "--on", "next tuesday")
    assert bad.code != 0 and "is not a date" in bad.err


def test_derivative_and_webhook_commands(lab: Services, cli: CliRunner, tmp_path: Path) -> None:
    hidden = cli(
        "derivatives", "add", "ada/secret", "--base", "tiny@1.0", "--owner", "ada@uni.example"
    )
    assert hidden.code != 0 and "no release tiny@1.0" in hidden.err  # partners: not Ada's to see
    with transaction(lab.sessions) as session:
        catalogue.get_release(session, "tiny@1.0").circle = "research"
    added = cli(
        "derivatives", "add", "ada/tiny-chat", "--base", "tiny@1.0", "--owner",
        "ada@uni.example", "--json",
    )  # fmt: skip
    assert added.code == 0, added.err
    assert added.json()["lineage"] == "declared"  # no weights to check against
    listed = cli("derivatives", "list", "tiny@1.0", "--json").json()
    assert [d["name"] for d in listed] == ["ada/tiny-chat"]

    hook = cli(
        "webhooks", "add", "http://127.0.0.1:9/none", "--owner", "admin@lab.example", "--json"
    )
    assert hook.code == 0, hook.err
    assert hook.json()["secret"].startswith("whsec_")
    # Outside the lab: a release's own fate only, over https to a public address.
    outside = cli("webhooks", "add", "http://127.0.0.1:9/x", "--owner", "ada@uni.example")
    assert outside.code != 0 and "only the lab's admins may watch every release" in outside.err
    private = cli(
        "webhooks", "add", "https://10.0.0.8/x", "--owner", "ada@uni.example",
        "--release", "tiny@1.0",
    )  # fmt: skip
    assert private.code != 0 and "private network" in private.err

    with transaction(lab.sessions) as session:
        from ringfence.access import circles

        circles.set_circle(
            session, catalogue.get_release(session, "tiny@1.0"), "in-house", actor="t"
        )
    # Nobody listens on port 9: the delivery fails, and waits for its next try.
    assert cli("webhooks", "deliver", "--json").json() == {"delivered": 0}
    [row] = cli("webhooks", "list", "--json").json()
    assert (row["event"], row["state"], row["attempts"]) == ("circle.changed", "pending", 1)
    assert row["last_error"]

"""What the areas feed into the metrics: mails (committed, sent, failed) and background jobs."""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import update

from ringfence.db import transaction
from ringfence.distribution.tasks import compute_pending
from ringfence.jobs.models import Job
from ringfence.jobs.services import report_depths
from ringfence.mail import services as mail
from ringfence.mail.messages import Message
from ringfence.wiring import Services
from tests.conftest import write_tiny_model
from tests.fixtures_access import Inbox, smtp_server
from tests.live import free_port
from tests.unit.distribution.world import make_world

__all__ = ["smtp_server"]

NOTE = Message(kind="test", subject="metrics", body="a mail the metrics count")


def value(name: str, **labels: str) -> float:
    """The current value of one sample in this process's registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_mail_counts_as_queued_only_once_its_decision_commits(services: Services) -> None:
    before = value("ringfence_mails_queued_total")
    with transaction(services.sessions) as session:
        mail.queue(session, "one@lab.example", NOTE)
        mail.queue_many(session, ["two@lab.example", "three@lab.example"], NOTE)
    with services.sessions() as session:
        mail.queue(session, "rolled-back@lab.example", NOTE)
        session.rollback()
        session.commit()  # a later commit of the same session does not count it after all
    assert value("ringfence_mails_queued_total") - before == 3


def test_sent_and_failed_deliveries_are_counted(
    services: Services, smtp_server: tuple[int, Inbox]
) -> None:
    port, inbox = smtp_server
    with transaction(services.sessions) as session:
        mail.queue_many(session, ["a@lab.example", "b@lab.example"], NOTE)
    sent, failed = value("ringfence_mails_sent_total"), value("ringfence_mails_failed_total")
    down = mail.SMTPMailer("127.0.0.1", free_port(), "ringfence@lab.example", timeout=2)
    assert down.deliver_pending(services.sessions) == 0
    assert value("ringfence_mails_failed_total") - failed == 2
    up = mail.SMTPMailer("127.0.0.1", port, "ringfence@lab.example")
    assert up.deliver_pending(services.sessions) == 2
    assert value("ringfence_mails_sent_total") - sent == 2
    assert len(inbox.messages) == 2


def test_the_manifest_queue_reports_its_depth_and_failures(
    services: Services, tmp_path: Path
) -> None:
    make_world(services, write_tiny_model(tmp_path / "tiny"))
    with services.sessions() as session:
        assert report_depths(session)["manifests"] == 1  # the grant queued its manifest's job
    assert value("ringfence_job_queue_depth", queue="manifests") == 1
    failures = value("ringfence_job_failures_total", job="manifest")
    shutil.rmtree(services.settings.blob_dir)  # the release's bytes are gone: the pass fails
    assert compute_pending(services) == 0
    assert value("ringfence_job_failures_total", job="manifest") - failures == 1
    with transaction(services.sessions) as session:
        session.execute(update(Job).values(state="succeeded"))
        assert report_depths(session)["manifests"] == 0
    assert value("ringfence_job_queue_depth", queue="manifests") == 0

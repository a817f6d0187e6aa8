"""Recipients of a release: one index rule for real and simulated ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.errors import InvalidInput
from ringfence.fingerprint import services as fingerprint
from ringfence.fingerprint.models import Recipient
from ringfence.wiring import Services
from tests.conftest import TINY_CODE, CliRunner


@pytest.fixture
def release_ref(services: Services, tiny_model: Path) -> str:
    with transaction(services.sessions) as s:
        catalogue.init_organisation(s, "lab")
        catalogue.publish(
            s, services.blobs, tiny_model, model="tiny", version="1.0", fingerprint=TINY_CODE
        )
    return "tiny@1.0"


def test_simulated_recipients_take_the_indices_after_everyone_registered(
    services: Services, release_ref: str
) -> None:
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, release_ref)
        assert fingerprint.register_recipient(s, release, "ada@x.org", actor="t").index == 0
        assert fingerprint.simulate_recipients(s, release, 3, actor="t", chunk=2) == 4
        assert fingerprint.register_recipient(s, release, "bob@x.org", actor="t").index == 4
        assert fingerprint.simulate_recipients(s, release, 1, actor="t") == 6
        rows = s.execute(
            select(Recipient.index, Recipient.email, Recipient.simulated)
            .where(Recipient.release_id == release.id)
            .order_by(Recipient.index)
        ).all()
    assert [tuple(r) for r in rows] == [
        (0, "ada@x.org", False),
        (1, "simulated-1@invalid", True),
        (2, "simulated-2@invalid", True),
        (3, "simulated-3@invalid", True),
        (4, "bob@x.org", False),
        (5, "simulated-5@invalid", True),
    ]


def test_simulating_nobody_is_refused(services: Services, release_ref: str) -> None:
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, release_ref)
        with pytest.raises(InvalidInput, match="at least one"):
            fingerprint.simulate_recipients(s, release, 0, actor="t")


def test_fingerprint_simulate_command_registers_them(
    services: Services, release_ref: str, cli: CliRunner
) -> None:
    done = cli("fingerprint", "simulate", release_ref, "--recipients", "5")
    assert done.code == 0, done.err
    assert "5 simulated recipients registered for tiny@1.0 (5 in all)" in done.out
    with services.sessions() as s:
        release = catalogue.get_release(s, release_ref)
        assert list(fingerprint.recipient_indices(s, release)) == [0, 1, 2, 3, 4]

"""Organisations: revoking an NDA ends partner standing at once, audited, with its grants."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.access import circles, grants
from ringfence.audit.models import AuditEvent
from ringfence.audit.tags import EventTag
from ringfence.errors import InvalidInput
from ringfence.organisations import services as organisations
from ringfence.organisations.models import NDA
from ringfence.wiring import Services
from tests.fixtures_access import make_partner, make_release, make_user


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as s:
        yield s
        s.commit()


def test_revoking_an_nda_ends_partner_standing_and_its_institution_grants(
    session: Session,
) -> None:
    inst = make_partner(session)
    member = make_user(session, "ada@partner.example", institution=inst)
    partners_only = make_release(session, "p", circle="partners")
    research = make_release(session, "r", circle="research")
    on_partners = grants.add_institution_grant(session, inst, partners_only, seats=3, actor="t")
    on_research = grants.add_institution_grant(session, inst, research, seats=3, actor="t")
    assert circles.standing(session, member) == "partners"
    nda = session.scalars(select(NDA)).one()
    with pytest.raises(InvalidInput, match="reason"):
        circles.revoke_nda(session, nda, reason=" ", actor="admin@lab.example")
    ended = circles.revoke_nda(session, nda, reason="contract ended", actor="admin@lab.example")
    assert circles.standing(session, member) == "research"
    assert not circles.admits(session, partners_only, member)
    assert ended.institution_grants == [on_partners.id]
    session.refresh(on_partners)
    session.refresh(on_research)
    assert (on_partners.state, on_research.state) == ("revoked", "active")
    tags = [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert EventTag.Access.NDARevoked in tags and EventTag.Access.InstitutionGrantRevoked in tags
    assert organisations.nda_record(nda)["active"] is False
    # Revoking again changes nothing and writes nothing.
    before = len(tags)
    circles.revoke_nda(session, nda, reason="again", actor="admin@lab.example")
    assert session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())) is not None
    assert len(list(session.scalars(select(AuditEvent)))) == before

"""Audit queries behind the admin page and `ringfence audit list`."""

from __future__ import annotations

import pytest

from ringfence.audit.services import event_row, query_events, record
from ringfence.audit.tags import EventTag
from ringfence.db import transaction
from ringfence.errors import InvalidInput
from ringfence.wiring import Services


def test_filters_by_tag_prefix_actor_and_subject(services: Services) -> None:
    with transaction(services.sessions) as session:
        record(session, EventTag.Access.GrantAdded, actor="a@x.example", subject="release:m@1")
        record(session, EventTag.Access.GrantRevoked, actor="b@x.example", subject="release:m@1")
        record(session, EventTag.Account.LoginFailed, actor="b@x.example", subject="user:b")
        assert [e.tag for e in query_events(session, tag="access:grant")] == [
            EventTag.Access.GrantRevoked,
            EventTag.Access.GrantAdded,
        ]
        # A prefix matches whole segments only: "access:gr" is not "access:grant".
        assert query_events(session, tag="access:gr") == []
        assert len(query_events(session, actor="B@x.example ")) == 2
        assert len(query_events(session, subject="m@1")) == 2
        newest = query_events(session, limit=1)[0]
        assert event_row(newest)["seq"] == 3
        assert [e.seq for e in query_events(session, before=3)] == [2, 1]
        with pytest.raises(InvalidInput):
            query_events(session, limit=0)

"""The audit vocabulary is a typed set of tags: record() refuses anything else."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from ringfence.audit.services import record
from ringfence.audit.tags import TAG_CLASSES, EventTag


def test_tag_values_are_area_subject_action_and_unique() -> None:
    values = [tag.value for cls in TAG_CLASSES for tag in cls]
    assert len(values) == len(set(values))
    for value in values:
        area, subject, action = value.split(":")
        assert area and subject and action, value


def test_record_refuses_a_free_form_string(services: object) -> None:
    from ringfence.wiring import Services

    assert isinstance(services, Services)
    with services.sessions() as session, pytest.raises(TypeError, match="EventTag"):
        record(session, "access:grant:added", actor="x", subject="y")  # type: ignore[arg-type]


def test_record_stores_the_plain_value(services: object) -> None:
    from ringfence.wiring import Services

    assert isinstance(services, Services)
    session: Session
    with services.sessions() as session:
        event = record(session, EventTag.Access.GrantAdded, actor="x", subject="y")
        assert type(event.tag) is str and event.tag == "access:grant:added"

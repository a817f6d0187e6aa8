"""Mail texts: every kind renders from its templates, and a missing value is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError

from ringfence.mail import messages

TEMPLATES = Path(messages.__file__).parent / "templates"


def test_every_template_folder_has_a_subject_and_a_body() -> None:
    kinds = sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())
    assert kinds
    for kind in kinds:
        assert (TEMPLATES / kind / "subject.txt").is_file(), kind
        assert (TEMPLATES / kind / "body.txt").is_file(), kind


def test_a_rejection_offers_one_appeal_then_says_final() -> None:
    first = messages.request_rejected(
        release="tiny@1.0", reason="no affiliation", may_appeal=True, base_url="https://rf"
    )
    assert first.subject == "Your request for tiny@1.0 was rejected"
    assert "Reason: no affiliation\n" in first.body
    assert "appeal once: https://rf/account" in first.body
    final = messages.request_rejected(
        release="tiny@1.0", reason="still none", may_appeal=False, base_url="https://rf"
    )
    assert "final" in final.body and "appeal once" not in final.body


def test_a_narrowing_says_access_may_return_a_single_revocation_does_not() -> None:
    narrowed = messages.access_revoked(release="t@1", reason="risk review.", narrowed=True)
    assert "revoked: risk review." in narrowed.body and "widens" in narrowed.body
    single = messages.access_revoked(release="t@1", reason="licence breach")
    assert "widens" not in single.body


def test_a_missing_value_fails_instead_of_mailing_a_blank() -> None:
    with pytest.raises(UndefinedError):
        messages.render("verify-email", {"address": "a@b.example"})


def test_a_subject_is_one_line() -> None:
    message = messages.licence_changed(
        release="t@1", title="Research\nonly", licence="r@2", release_url="u"
    )
    assert "\n" not in message.subject

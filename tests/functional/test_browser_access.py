"""The access flow in a real browser (Debian's Chromium through Playwright), with real SMTP.

A researcher signs up, verifies the mailed link, requests access and accepts the licence; a
reviewer approves; an admin narrows the circle to partners and the researcher sees the grant
revoked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.db import transaction
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.fixtures_access import (
    PASSWORD,
    Inbox,
    make_release,
    make_user,
    totp_code,
)
from tests.live import free_port, serve

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make chromium)"),
]


@pytest.fixture
def server(home: Path, smtp_server: tuple[int, Inbox]) -> Iterator[tuple[str, Services]]:
    """A live ringfence server (its URL, and its services) mailing through the test SMTP server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    svc = build(Settings(home=home, mail_backend="smtp", smtp_port=smtp_server[0], base_url=url))
    svc.prepare()
    with transaction(svc.sessions) as session:
        make_release(session, circle="research")
        make_user(session, "reviewer@lab.example", role="reviewer", secrets=svc.secrets)
        make_user(session, "admin@lab.example", role="admin", secrets=svc.secrets)
    with serve(create_app(svc), port) as base:
        yield base, svc


def test_researcher_reviewer_admin_flow(
    server: tuple[str, Services], smtp_server: tuple[int, Inbox]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, svc = server
    inbox = smtp_server[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            researcher = browser.new_context().new_page()

            def sign_in(page, email: str) -> None:  # type: ignore[no-untyped-def]
                page.goto(f"{base}/login")
                page.get_by_label("Email").fill(email)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                if email.endswith("@lab.example"):  # admins and reviewers: the code step
                    code = totp_code(svc.sessions, email)
                    page.get_by_label("Code from your authenticator app").fill(code)
                    page.get_by_role("button", name="Verify").click()
                expect(page.get_by_test_id("signed-in-as")).to_contain_text(email)

            # Sign up and verify the address from the mail.
            researcher.goto(f"{base}/signup")
            researcher.get_by_label("Email").fill("ada@uni.example")
            researcher.get_by_label("Name").fill("Ada")
            researcher.get_by_label("Password (at least 10 characters)").fill(PASSWORD)
            researcher.get_by_role("button", name="Sign up").click()
            expect(researcher.get_by_test_id("notice")).to_contain_text("Check your mail")
            link = re.search(r"(http://\S+/verify\?token=\S+)", inbox.last_body("ada@uni.example"))
            assert link, "no verification link in the mail"
            researcher.goto(link.group(1))
            expect(researcher.get_by_test_id("notice")).to_contain_text("verified")
            sign_in(researcher, "ada@uni.example")

            # Request access with the release's form, then accept the licence.
            researcher.goto(f"{base}/models/tiny/1.0")
            form = researcher.get_by_test_id("request-form")
            form.get_by_label("Affiliation").fill("University of Examples")
            form.get_by_label("Country").select_option("FR")
            form.get_by_label("Intended use").select_option("Research")
            form.get_by_label("I will not share the weights with anyone").check()
            form.get_by_role("button", name="Request access").click()
            expect(researcher.get_by_test_id("request-state")).to_contain_text("pending")
            licence = researcher.get_by_test_id("licence-form")
            licence.get_by_role("checkbox").check()
            licence.get_by_role("button", name="Accept licence").click()
            expect(researcher.get_by_test_id("licence-accepted")).to_be_visible()

            # A reviewer approves from the queue.
            reviewer = browser.new_context().new_page()
            sign_in(reviewer, "reviewer@lab.example")
            reviewer.goto(f"{base}/review")
            row = reviewer.get_by_test_id("review-row").filter(has_text="ada@uni.example")
            row.get_by_role("checkbox").check()
            reviewer.get_by_role("button", name="Approve selected").click()
            expect(reviewer.get_by_test_id("notice")).to_contain_text("Decisions recorded")
            researcher.reload()
            expect(researcher.get_by_test_id("download-state")).to_contain_text(
                "You may download this release"
            )
            assert "approved" in inbox.to("ada@uni.example")[-1]["Subject"]

            # An admin narrows the circle to partners; the researcher's grant is revoked.
            admin = browser.new_context().new_page()
            sign_in(admin, "admin@lab.example")
            admin.goto(f"{base}/admin/circles")
            circle_form = admin.get_by_test_id("circle-form-tiny@1.0")
            circle_form.get_by_label("circle for tiny@1.0").select_option("partners")
            circle_form.get_by_label("reason for tiny@1.0").fill("risk review after an incident")
            circle_form.get_by_role("button", name="Set circle").click()
            expect(admin.get_by_test_id("notice")).to_contain_text("circle was changed")

            researcher.goto(f"{base}/account")
            grant = researcher.get_by_test_id("grant-row").filter(has_text="tiny@1.0")
            expect(grant).to_contain_text("revoked")
            expect(grant).to_contain_text("risk review after an incident")
            researcher.goto(f"{base}/models/tiny/1.0")
            expect(researcher.get_by_test_id("circle")).to_have_text("partners")
            expect(researcher.get_by_test_id("download-state")).not_to_contain_text(
                "You may download"
            )
            assert "revoked" in inbox.to("ada@uni.example")[-1]["Subject"]
        finally:
            browser.close()

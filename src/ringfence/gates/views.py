"""The gates on a release page: widest allowed circle, the last run's progress and results,
running the gates in the background, the report, overrides and their sign-off."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence import jobs
from ringfence.access.circles import visible_release
from ringfence.accounts.models import LAB_ROLES, User
from ringfence.catalogue.models import Release
from ringfence.errors import Conflict, NotFound
from ringfence.gates import report as reports
from ringfence.gates import services as gates
from ringfence.gates.models import Override
from ringfence.gates.tasks import RUN_TASK
from ringfence.web.deps import db_session, get_services
from ringfence.web.pages import NOTICES, redirect
from ringfence.web.security import Permission, page_user, template_user, verify_csrf
from ringfence.web.templating import templates

router = APIRouter(include_in_schema=False)
CSRF = [Depends(verify_csrf)]

NOTICES.setdefault("gates-started", "The gates are running; this page shows their progress.")
NOTICES.setdefault("override-asked", "Override recorded; a second admin must sign it off.")
NOTICES.setdefault("override-signed", "Override signed off; it is in force.")


def release_gates(request: Request, release: Release) -> dict[str, Any] | None:
    """Jinja global for release.html: the gates' state, for lab staff only (None otherwise)."""
    user = template_user(request)
    if user is None or user.role not in LAB_ROLES:
        return None
    with get_services(request).sessions() as session:
        current = session.get(Release, release.id)
        assert current is not None
        widest = gates.widest_allowed(session, current)
        run = gates.latest_run(session, current)
        pending = [
            {"id": o.id, "circle": o.circle, "reason": o.reason, "by": o.requested_by}
            for o in session.scalars(
                select(Override).where(
                    Override.release_id == release.id, Override.state == "pending"
                )
            )
        ]
        return {
            "widest": widest.circle,
            "capped_by": [{"gate": c.source, "reason": c.reason} for c in widest.capped_by],
            "run": (
                {
                    "state": run.state,
                    "progress": round(run.progress * 100),
                    "message": run.message,
                    "results": [
                        {"name": r.name, "passed": r.passed, "reason": r.reason}
                        for r in run.results
                    ],
                }
                if run
                else None
            ),
            "pending": pending,
            "is_admin": user.role == "admin",
        }


templates.env.globals["release_gates"] = release_gates


@router.post("/models/{name}/{version}/gates/run", dependencies=CSRF)
def start_run(
    request: Request,
    name: str,
    version: str,
    session: Session = Depends(db_session),
    user: User = Depends(page_user(Permission.ADMIN)),
) -> Response:
    """Start the gate suite on a release in the background."""
    release = visible_release(session, f"{name}@{version}", user)
    latest = gates.latest_run(session, release)
    queued = jobs.latest_job(session, RUN_TASK, f"release:{release.id}")
    if (latest is not None and latest.state == "running") or (
        queued is not None and queued.state in ("queued", "running")
    ):
        raise Conflict(f"the gates are already running on {release.ref}")
    jobs.enqueue(
        session, RUN_TASK, subject=f"release:{release.id}", release_id=release.id, actor=user.email
    )
    session.commit()
    return redirect(f"/models/{name}/{version}", "gates-started")


@router.get("/models/{name}/{version}/gates/report", response_class=HTMLResponse)
def report_page(
    name: str,
    version: str,
    session: Session = Depends(db_session),
    user: User = Depends(page_user(Permission.REVIEW)),
) -> HTMLResponse:
    """The release report of the latest finished run."""
    release = visible_release(session, f"{name}@{version}", user)
    run = gates.latest_run(session, release, finished=True)
    if run is None or run.report is None:
        raise NotFound(f"no finished gate run on {release.ref}", hint="run the gates first")
    return HTMLResponse(reports.render_html(run.report))


@router.post("/models/{name}/{version}/gates/override", dependencies=CSRF)
def ask_override(
    name: str,
    version: str,
    circle: str = Form(...),
    reason: str = Form(""),
    session: Session = Depends(db_session),
    user: User = Depends(page_user(Permission.ADMIN)),
) -> Response:
    """An admin asks to allow the release wider than its gates do."""
    release = visible_release(session, f"{name}@{version}", user)
    gates.request_override(session, release, circle, reason=reason, admin=user)
    session.commit()
    return redirect(f"/models/{name}/{version}", "override-asked")


@router.post("/gates/overrides/{override_id}/sign-off", dependencies=CSRF)
def sign_off(
    override_id: int,
    session: Session = Depends(db_session),
    user: User = Depends(page_user(Permission.ADMIN)),
) -> Response:
    """A second admin signs off an override."""
    row = gates.sign_off(session, override_id, admin=user)
    target = f"/models/{row.release.model.name}/{row.release.version}"
    session.commit()
    return redirect(target, "override-signed")

"""The jobs area's pages: recent background jobs for the lab, and an admin's retry.

The router's lifespan runs this server process's job worker (`ringfence.jobs.worker`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.errors import RingfenceError
from ringfence.jobs import services as jobs
from ringfence.jobs.models import STATES
from ringfence.jobs.worker import lifespan
from ringfence.web.deps import db_session
from ringfence.web.pages import redirect, render
from ringfence.web.params import DbId
from ringfence.web.security import Permission, client_ip, page_user, verify_csrf

router = APIRouter(lifespan=lifespan, include_in_schema=False)


def _page(
    request: Request,
    session: Session,
    user: User,
    state: str,
    *,
    error: str = "",
    status: int = 200,
) -> Response:
    state = state if state in STATES else ""
    context = {
        "jobs": jobs.recent_jobs(session, state=state),
        "state": state,
        "states": STATES,
        "error": error,
        "can_retry": user.role == "admin",  # the retry route checks Permission.ADMIN itself
    }
    return render(request, "jobs/admin.html", context, status_code=status)


@router.get("/admin/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    state: str = "",
    user: User = Depends(page_user(Permission.JOBS)),
    session: Session = Depends(db_session),
) -> Response:
    """Recent jobs with state, attempts, progress and last error (staff and admins)."""
    return _page(request, session, user, state)


@router.post("/admin/jobs/{job_id}/retry", dependencies=[Depends(verify_csrf)])
def retry(
    request: Request,
    job_id: DbId,
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Queue a failed job again (admins; audited)."""
    try:
        jobs.retry_failed(
            session, jobs.get_job(session, job_id), actor=user.email, ip=client_ip(request)
        )
    except RingfenceError as exc:
        session.rollback()
        return _page(request, session, user, "", error=exc.diagnostics(), status=exc.http_status)
    session.commit()
    return redirect("/admin/jobs", "saved")

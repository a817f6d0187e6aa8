"""Admin pages: upload a suspect file, run a trace, read the evidence report."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.errors import InvalidInput
from ringfence.tracing import services as tracing
from ringfence.tracing.report import content_security_policy, render_report
from ringfence.web.deps import db_session, get_services
from ringfence.web.security import Permission, api_user, page_user, verify_csrf
from ringfence.web.templating import templates

router = APIRouter()


@router.get("/admin/trace", response_class=HTMLResponse)
def trace_form(request: Request, user: User = Depends(page_user(Permission.ADMIN))) -> Response:
    """The upload form (admin)."""
    return templates.TemplateResponse(request, "tracing/trace.html", {"user": user})


def _run(
    request: Request, session: Session, upload: UploadFile, release: str, actor: str
) -> tracing.TraceResult:
    name = Path(upload.filename or "suspect").name or "suspect"
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-upload-"))
    try:
        target = workdir / name
        with target.open("wb") as fh:
            shutil.copyfileobj(upload.file, fh, 8 << 20)
        if target.stat().st_size == 0:
            raise InvalidInput("the uploaded file is empty")
        return tracing.trace(
            get_services(request),
            session,
            [target],
            release_ref=release.strip() or None,
            actor=actor,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@router.post("/admin/trace", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def trace_upload(
    request: Request,
    suspect: UploadFile = File(...),
    release: str = Form(""),
    user: User = Depends(page_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> Response:
    """Trace an uploaded file and answer with the evidence report (admin)."""
    result = _run(request, session, suspect, release, user.email)
    session.commit()  # the trace's audit event is durable before the report goes out
    return HTMLResponse(
        render_report(result), headers={"Content-Security-Policy": content_security_policy()}
    )


@router.post("/api/v1/trace", tags=["tracing"])
def api_trace(
    request: Request,
    suspect: UploadFile = File(...),
    release: str = Form(""),
    user: User = Depends(api_user(Permission.ADMIN)),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Trace an uploaded file; the same JSON object as `ringfence trace --json` (admin)."""
    result = _run(request, session, suspect, release, user.email)
    session.commit()  # the trace's audit event is durable before the report goes out
    return result.summary()

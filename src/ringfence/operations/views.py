"""`GET /metrics`: the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ringfence.errors import NotFound
from ringfence.operations.services import FORWARDING_HEADERS, exposition, may_read_metrics
from ringfence.web.deps import get_services
from ringfence.web.security import bearer

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The metrics, for the metrics token or a loopback scraper; "not found" to anyone else."""
    token = get_services(request).settings.metrics_token
    allowed = may_read_metrics(
        metrics_token=token.get_secret_value() if token else None,
        bearer=bearer(request),
        peer=request.client.host if request.client else None,
        forwarded=any(h in request.headers for h in FORWARDING_HEADERS),
    )
    if not allowed:
        # As for any page that does not exist: a refusal would tell that it does.
        raise NotFound("no such page")
    body, content_type = exposition()
    return Response(body, media_type=content_type)

"""Background work: computing and signing recipients' manifests once their grant is active.

A grant becoming active (`access.grants.issue_grant`: approvals, rules, `grants add`, seats of
an institution grant) enqueues the job `distribution.manifest` in the same transaction; a job
worker (`ringfence.jobs`) computes it, retrying with backoff, and the manifest row says
"failed" with the error once the retries are spent. `compute_pending` computes every missing
manifest at once (the CLI's `manifests compute`, tests, and grants from before the queue).
Failures of that pass count in `ringfence_job_failures_total{job="manifest"}`; the job's in
`{job="distribution.manifest"}`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from ringfence.distribution import services as dist
from ringfence.jobs import JobContext, task
from ringfence.operations import metrics
from ringfence.wiring import Services

log = logging.getLogger("ringfence.distribution")

MANIFEST_TASK = "distribution.manifest"


def manifest_subject(release_id: int, user_id: int) -> str:
    """The subject of a recipient's manifest job (for `jobs.latest_job`)."""
    return f"release:{release_id}:user:{user_id}"


@task(MANIFEST_TASK, queue="manifests", retries=3, backoff=5)
def compute_manifest_job(ctx: JobContext, release_id: int, user_id: int) -> None:
    """Compute one recipient's manifest, unless it is ready or another worker computes it."""
    # A claim as old as a stale job's heartbeat was its dead worker's: take it over.
    stale = timedelta(seconds=ctx.services.settings.job_stale_after_s)
    if not dist.claim_manifest(ctx.services, release_id, user_id, timeout=stale):
        return
    ctx.progress(0.0, "hashing the recipient's copy")
    try:
        dist.compute_manifest(ctx.services, release_id, user_id)
    except Exception as exc:
        if ctx.final_attempt:
            dist.mark_failed(ctx.services, release_id, user_id, f"{type(exc).__name__}: {exc}")
        else:
            dist.release_claim(ctx.services, release_id, user_id)  # the retry claims it again
        raise


def compute_pending(services: Services, limit: int | None = None) -> int:
    """Compute every pending manifest now (the CLI and tests call this); returns how many."""
    with services.sessions() as session:
        pending = dist.pending_manifests(session)
    done = 0
    for release_id, user_id in pending:
        if limit is not None and done >= limit:
            break
        if not dist.claim_manifest(services, release_id, user_id):
            continue  # computed meanwhile, or another process is computing it
        try:
            dist.compute_manifest(services, release_id, user_id)
            done += 1
        except Exception as exc:  # a broken blob must not stop the others
            log.exception("manifest of release %s for user %s failed", release_id, user_id)
            metrics.JOB_FAILURES.labels("manifest").inc()
            dist.mark_failed(services, release_id, user_id, f"{type(exc).__name__}: {exc}")
    return done

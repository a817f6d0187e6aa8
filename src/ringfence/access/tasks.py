"""Scheduled access work: expiring grants and requests, a periodic job.

`access.expire` runs every `settings.expiry_interval_s` seconds on whichever job worker
enqueues the slot first (`ringfence.jobs`); its passes are safe to overlap anyway (see
`ringfence.access.expiry`). `ringfence expire` runs one pass, for cron.
"""

from __future__ import annotations

from datetime import datetime

from ringfence.access import expiry
from ringfence.db import transaction
from ringfence.jobs import JobContext, task
from ringfence.wiring import Services

EXPIRY_TASK = "access.expire"


def run_expiry(
    services: Services, *, now: datetime | None = None, actor: str = "system"
) -> expiry.ExpiryRun:
    """One expiry pass in one transaction, then the mails it queued go out."""
    settings = services.settings
    with transaction(services.sessions) as session:
        done = expiry.expire_due(
            session,
            request_lifetime_days=settings.request_lifetime_days,
            now=now,
            actor=actor,
            base_url=settings.base_url,
        )
    if done.grants or done.requests:
        services.mailer.deliver_pending(services.sessions)
    return done


@task(EXPIRY_TASK, queue="maintenance", retries=0, every=lambda s: s.expiry_interval_s)
def expire_job(ctx: JobContext) -> None:
    """The periodic expiry pass (a failure waits for the next slot, so no retries)."""
    done = run_expiry(ctx.services)
    ctx.progress(1.0, f"{len(done.grants)} grants and {len(done.requests)} requests expired")

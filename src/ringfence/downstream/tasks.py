"""Scheduled downstream work, as periodic jobs: schedule steps, reviewers' notices of new
requests, webhook deliveries.

Each runs every `settings.downstream_interval_s` seconds on whichever job worker enqueues the
slot first (`ringfence.jobs`). Passes are safe to overlap anyway: a delivery is claimed before
it is sent, and a schedule step runs in one transaction through `set_circle`.
`ringfence webhooks deliver` and `ringfence schedule run` run one pass each, for cron.
"""

from __future__ import annotations

from ringfence.downstream import requests, schedules
from ringfence.jobs import JobContext, task
from ringfence.settings import Settings
from ringfence.webhooks import services as webhooks


def _every(settings: Settings) -> float:
    return settings.downstream_interval_s


@task("downstream.schedule", queue="maintenance", retries=0, every=_every)
def schedule_job(ctx: JobContext) -> None:
    """Take the schedule steps that are due (a held step waits for the next slot)."""
    schedules.run_due(ctx.services)
    ctx.progress(1.0, "schedule steps checked")


@task("downstream.review_notices", queue="maintenance", retries=0, every=_every)
def review_notices_job(ctx: JobContext) -> None:
    """Tell reviewers of new requests (each time, or their daily digest when due)."""
    requests.notify_reviewers(ctx.services)
    ctx.progress(1.0, "reviewers told")


@task("webhooks.deliver", queue="webhooks", retries=0, every=_every)
def deliver_job(ctx: JobContext) -> None:
    """Deliver the webhook messages that are due (each with its own backoff)."""
    webhooks.deliver_due(ctx.services)
    ctx.progress(1.0, "webhooks delivered")

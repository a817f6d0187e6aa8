"""Mail's background work: delivering what is still queued, a periodic job.

Decisions deliver their mails right after they commit (`Mailer.deliver_pending`); a mail
whose delivery failed (the SMTP server was down) waits in the outbox table. `mail.deliver`
tries those again every `settings.mail_retry_interval_s` seconds, each mail up to
`MAX_ATTEMPTS` times, so they no longer wait for the next decision to go out.
"""

from __future__ import annotations

from ringfence.jobs import JobContext, task


@task("mail.deliver", queue="mail", retries=0, every=lambda s: s.mail_retry_interval_s)
def deliver_job(ctx: JobContext) -> None:
    """Deliver the mails still queued (a failure waits for the next slot)."""
    sent = ctx.services.mailer.deliver_pending(ctx.services.sessions)
    ctx.progress(1.0, f"{sent} mails sent")

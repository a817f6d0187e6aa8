"""The gates' background work: a run started from the release page is a job on the queue.

`gates.run` records its progress on the run's row (the release page reads it) and on the job
(`/admin/jobs`). No retries: a failed run is recorded as failed, and an admin starts another.
"""

from __future__ import annotations

from ringfence.gates import services as gates
from ringfence.jobs import JobContext, task

RUN_TASK = "gates.run"


@task(RUN_TASK, queue="gates", retries=0)
def run_job(ctx: JobContext, release_id: int, actor: str) -> None:
    """Run the whole gate suite on a release."""
    gates.run_gates(ctx.services, release_id, ctx.progress, actor=actor)

"""`ringfence worker`: a background job worker outside the web server."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from types import FrameType

import typer

from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.jobs.worker import Worker, tick


def worker(
    burst: bool = typer.Option(
        False, "--burst", help="Run the jobs due now, then exit (for cron, or a one-off)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (with --burst)."),
) -> None:
    """Run background jobs (manifests, expiry...) until stopped; any number may run at once."""
    svc = services()
    if burst:
        # Every periodic slot's job is due to a one-off run (cron calls it now and then).
        tick(svc, datetime.fromtimestamp(0, UTC))
        emit({"jobs_run": svc.jobs.work(burst=True)}, as_json=as_json)
        return
    running = Worker(svc)

    def _stop(signum: int, frame: FrameType | None) -> None:
        running.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print("job worker running; Ctrl-C or SIGTERM stops it after the job in progress")
    running.start()
    running.wait()


def register(app: typer.Typer) -> None:
    """Add `worker`."""
    app.command("worker")(worker)

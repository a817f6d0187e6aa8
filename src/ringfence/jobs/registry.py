"""The task registry: `@task` names a function a worker may run, with its queue and retries.

Areas declare their tasks in their own `tasks.py`; `load_tasks` imports them all, so the
enqueuer (which needs a task's queue and retries) and every worker know the same set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ringfence.errors import InvalidInput
from ringfence.settings import Settings

if TYPE_CHECKING:
    from ringfence.wiring import Services

#: the areas whose `tasks` module declares jobs (imported by `load_tasks`)
TASK_AREAS = ("access", "distribution", "mail", "gates", "downstream", "webhooks", "incidents")


class Progress(Protocol):
    """Reports how far the running job is: a fraction in [0, 1] and a line for a person."""

    def __call__(self, fraction: float, message: str = "") -> None: ...


@dataclass(frozen=True)
class JobContext:
    """What a task function receives first: the services, its job and a progress reporter."""

    services: Services
    job_id: int
    #: 1 on the first run, 2 on the first retry...
    attempt: int
    #: whether a failure now is the last (no retry follows)
    final_attempt: bool
    progress: Progress


TaskFunction = Callable[..., None]


@dataclass(frozen=True)
class Task:
    """A registered task: what runs, on which queue, and how failures are retried."""

    name: str
    fn: TaskFunction
    queue: str
    #: retries after the first failure (so `retries + 1` runs at most)
    retries: int
    #: the wait before retry n is `backoff ** n` seconds (procrastinate's exponential_wait)
    backoff: int
    #: periodic tasks: seconds between runs, from the settings (None: enqueued by callers)
    every: Callable[[Settings], float] | None = None

    @property
    def max_attempts(self) -> int:
        """Runs at most: the first and each retry."""
        return self.retries + 1

    def delay(self, attempt: int) -> int:
        """Seconds to wait after failed run `attempt` before the next one."""
        return int(self.backoff**attempt) if self.backoff else 0


TASKS: dict[str, Task] = {}
_loaded = False


def task(
    name: str,
    *,
    queue: str = "default",
    retries: int = 3,
    backoff: int = 2,
    every: Callable[[Settings], float] | None = None,
) -> Callable[[TaskFunction], TaskFunction]:
    """Register `fn(ctx, **kwargs)` as the task `name` (registering a name again replaces it)."""

    def register(fn: TaskFunction) -> TaskFunction:
        TASKS[name] = Task(name, fn, queue, retries, backoff, every)
        return fn

    return register


def load_tasks() -> dict[str, Task]:
    """Import every area's `tasks` module once; returns the registry."""
    global _loaded
    if _loaded:
        return TASKS  # an absent area's import is a search of the path: not once per job
    _loaded = True
    for area in TASK_AREAS:
        try:
            importlib.import_module(f"ringfence.{area}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"ringfence.{area}.tasks", f"ringfence.{area}"):
                raise
    return TASKS


def get_task(name: str) -> Task:
    """The registered task `name`, or InvalidInput (a typo must not enqueue a dead job)."""
    found = load_tasks().get(name)
    if found is None:
        raise InvalidInput(f"no background task {name!r}", hint="see ringfence.jobs.registry")
    return found


def periodic_tasks() -> list[Task]:
    """The tasks that run on a schedule."""
    return [t for t in load_tasks().values() if t.every is not None]


def call(t: Task, ctx: JobContext, args: dict[str, Any]) -> None:
    """Run the task's function (a seam for the worker, not for callers)."""
    t.fn(ctx, **args)

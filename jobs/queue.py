"""Durable jobs: recorded with the change that asks for them, claimed by exactly one process.

The claiming is the assistant's (`assistant/runs.py`) without what only replies need (one
running run per room, streaming, showing a message): a queued row is taken with
`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite serializes writers anyway), so
any number of processes share the work and none does a job twice; the process doing a job
beats on it with the database's clock; a job whose process went silent for
`JOBS_STALE_SECONDS` is queued again (`recover_orphans`), and a stopping process gives its
jobs back at once (`hand_back`). A handler that raises is retried with back-off, up to the
job's `max_attempts`; then the job fails and the kind's `on_failure` is told.

A handler must be safe to run again: a job taken over from a process that only looked dead,
or interrupted by a stop, runs from the start somewhere else.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from jobs.models import Job

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 10
RETRY_MAX_SECONDS = 3600


class Interrupted(Exception):
    """Raised by a handler (through `JobContext.check`) when its process is stopping: the
    job goes back to the queue without counting as a failed attempt."""


@dataclass
class JobContext:
    """What a handler may ask of the runner doing its job."""

    job: Job
    stopping: Callable[[], bool] = lambda: False

    def check(self) -> None:
        """Call between steps of a long job: raises Interrupted if the process is stopping."""
        if self.stopping():
            raise Interrupted()


Handler = Callable[[Job, JobContext], None]
FailureHandler = Callable[[Job], None]


@dataclass(frozen=True)
class Kind:
    run: Handler
    on_failure: FailureHandler | None = None


_kinds: dict[str, Kind] = {}
# Called after a job is committed: this process's runner, if it has one, looks at once.
_wake: list[Callable[[], None]] = []


def register(kind: str, run: Handler, *, on_failure: FailureHandler | None = None) -> None:
    """`run(job, context)` does jobs of `kind` (an app registers it in its `ready()`);
    `on_failure(job)` is called, in the failing transaction, when the last attempt failed."""
    _kinds[kind] = Kind(run, on_failure)


def handler(kind: str) -> Kind | None:
    return _kinds.get(kind)


def on_enqueue(wake: Callable[[], None]) -> None:
    if wake not in _wake:
        _wake.append(wake)


def enqueue(
    kind: str, payload: dict[str, Any], *, run_after: dt.datetime | None = None, max_attempts: int = 5
) -> Job:
    """Record a job in the caller's transaction; runners see it once that commits."""
    if kind not in _kinds:
        raise ValueError(f"No handler is registered for {kind!r} jobs.")
    job = Job.objects.create(
        kind=kind, payload=payload, run_after=run_after or timezone.now(), max_attempts=max_attempts
    )
    if run_after is None:
        for wake in _wake:
            transaction.on_commit(wake)
    return job


def enqueue_many(kind: str, payloads: list[dict[str, Any]], *, max_attempts: int = 5) -> list[Job]:
    """Record several jobs of one kind in one insert, in the caller's transaction."""
    if kind not in _kinds:
        raise ValueError(f"No handler is registered for {kind!r} jobs.")
    if not payloads:
        return []
    now = timezone.now()
    jobs = Job.objects.bulk_create(
        [Job(kind=kind, payload=payload, run_after=now, max_attempts=max_attempts) for payload in payloads]
    )
    for wake in _wake:
        transaction.on_commit(wake)
    return jobs


def holds(job: Job) -> bool:
    """Inside a transaction: lock the running job's row and tell whether this worker still
    has it. A handler that records follow-up work and finishes in one transaction (so a
    rerun never records it twice) asks this first."""
    return _ours(job, job.worker).select_for_update().exists()


# Claiming


def _ready() -> QuerySet[Job]:
    # run_after is written with the writer's clock and read with this host's: hosts a second
    # apart start a job a second early or late, no more.
    return Job.objects.filter(status=Job.Status.QUEUED, run_after__lte=timezone.now(), kind__in=list(_kinds))


def claim_next(worker: str) -> Job | None:
    """Take the oldest job that is due, or None."""
    # Most looks find nothing: answer that without a locking transaction (on SQLite,
    # BEGIN IMMEDIATE takes the database's write lock).
    if not _ready().exists():
        return None
    with transaction.atomic():
        query = _ready().order_by("run_after", "id")
        if connection.features.has_select_for_update_skip_locked:
            query = query.select_for_update(skip_locked=True)
        job = query.first()
        if job is None:
            return None
        started = timezone.now()
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.RUNNING,
            worker=worker,
            heartbeat_at=Now(),
            started_at=started,
            attempts=F("attempts") + 1,
        )
    job.status, job.worker, job.started_at, job.attempts = (
        Job.Status.RUNNING,
        worker,
        started,
        job.attempts + 1,
    )
    return job


def _ours(job: Job, worker: str) -> QuerySet[Job]:
    return Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, worker=worker)


def beat(worker: str, job_ids: list[int]) -> None:
    """The runner's heartbeat for the jobs it is doing."""
    if job_ids:
        Job.objects.filter(pk__in=job_ids, status=Job.Status.RUNNING, worker=worker).update(
            heartbeat_at=Now()
        )


def finish(job: Job, worker: str) -> bool:
    """The job is done; False if it was no longer this worker's (taken over meanwhile)."""
    return bool(_ours(job, worker).update(status=Job.Status.DONE, finished_at=timezone.now(), worker=""))


def retry_delay(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


def fail(job: Job, worker: str, error: str) -> str:
    """The handler raised: retry later with back-off, or fail for good after the last attempt.
    Returns the job's new status ("" if it was no longer this worker's)."""
    with transaction.atomic():
        current = _ours(job, worker).select_for_update().first()
        if current is None:
            return ""
        return _give_back_or_fail(current, error=error[:300], delay=retry_delay(current.attempts))


def _give_back_or_fail(job: Job, *, error: str, delay: dt.timedelta) -> str:
    """Inside a transaction holding the running job: queue it again, or fail it for good."""
    if job.attempts < job.max_attempts:
        job.status, job.worker, job.error = Job.Status.QUEUED, "", error
        job.run_after = timezone.now() + delay
        job.save(update_fields=["status", "worker", "error", "run_after"])
        return job.status
    job.status, job.worker, job.error, job.finished_at = Job.Status.FAILED, "", error, timezone.now()
    job.save(update_fields=["status", "worker", "error", "finished_at"])
    kind = _kinds.get(job.kind)
    if kind is not None and kind.on_failure is not None:
        kind.on_failure(job)
    return job.status


# Jobs whose process stopped


def recover_orphans(*, everything: bool = False) -> int:
    """Running jobs whose process went silent go back to the queue (or fail, after their
    last attempt). `everything`: this is the only process, so every running job is one."""
    query = Job.objects.filter(status=Job.Status.RUNNING)
    if not everything:
        query = query.filter(heartbeat_at__lt=Now() - dt.timedelta(seconds=settings.JOBS_STALE_SECONDS))
    recovered = 0
    for job_id in list(query.values_list("pk", flat=True)):
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id, status=Job.Status.RUNNING).first()
            if job is None:
                continue
            _give_back_or_fail(job, error="Its process stopped.", delay=dt.timedelta(0))
            recovered += 1
    if recovered:
        log.warning("Recovered %d job(s) left running by a stopped process", recovered)
    return recovered


def hand_back(worker: str, job_ids: list[int] | None = None) -> int:
    """A stopping process gives its running jobs back, not counted as failed attempts."""
    query = Job.objects.filter(status=Job.Status.RUNNING, worker=worker)
    if job_ids is not None:
        query = query.filter(pk__in=job_ids)
    return query.update(status=Job.Status.QUEUED, worker="", attempts=F("attempts") - 1)

"""Doing jobs: one thread per process claims them and runs their handlers one at a time.

Jobs are synchronous database and file work (building a ZIP, sending a push or an
email), so the runner is a thread rather than a task on the event loop: a long job never
holds up a WebSocket. A second thread beats for the job in hand every
`JOBS_HEARTBEAT_SECONDS`, and looks for jobs left by a process that died.

A runner starts in each web process with its first request (calpico/asgi.py, unless
`JOBS_RUNNER_IN_SERVER=false`) and in each `manage.py assistant_worker`. A job committed in
this process wakes it at once; jobs committed elsewhere are found at the next poll
(`JOBS_POLL_SECONDS`). On SIGTERM (calpico/shutdown.py; in a web process, as its drain
begins) the runner claims no more and the job in hand is asked to stop at its next step and
goes back to the queue.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connections

from calpico import metrics
from jobs import queue
from jobs.models import Job

log = logging.getLogger(__name__)

# How long a stopping process waits for the job in hand to reach its next step.
SHUTDOWN_WAIT = 1.5


def _release_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.vendor != "sqlite" and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def run_job(job: Job, worker: str, stopping=lambda: False) -> str:
    """Run one claimed job's handler and store how it ended; returns its status."""
    kind = queue.handler(job.kind)
    if kind is None:  # claimed only for registered kinds; a deploy may have removed one
        return queue.fail(job, worker, f"No handler for {job.kind!r} jobs.")
    try:
        kind.run(job, queue.JobContext(job, stopping))
    except queue.Interrupted:
        queue.hand_back(worker, [job.pk])
        return Job.Status.QUEUED
    except Exception as exc:
        log.exception("Job %s (%s) failed", job.pk, job.kind)
        status = queue.fail(job, worker, f"{type(exc).__name__}: {exc}")
        _count(job.kind, status)
        return status
    queue.finish(job, worker)
    _count(job.kind, Job.Status.DONE)
    return Job.Status.DONE


def _count(kind: str, status: str) -> None:
    metrics.JOBS_FINISHED.labels(kind=kind, status=status or "lost").inc()


class JobRunner:
    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.current: int | None = None
        self.threads: list[threading.Thread] = []

    def start(self, *, recover_everything: bool = False) -> None:
        self.recover_everything = recover_everything
        for target, name in ((self._serve, "jobs-runner"), (self._beat, "jobs-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def notify(self) -> None:
        self.wake.set()

    def _serve(self) -> None:
        try:
            queue.recover_orphans(everything=self.recover_everything)
        except Exception:
            log.exception("Could not recover jobs")
        while not self.stopping.is_set():
            did = False
            try:
                did = self.run_one()
            except Exception:
                log.exception("Could not claim a job")
            finally:
                _release_connections()
            if not did:
                self.wake.wait(timeout=settings.JOBS_POLL_SECONDS)
                self.wake.clear()
        close_old_connections()

    def run_one(self) -> bool:
        job = queue.claim_next(self.worker)
        if job is None:
            return False
        self.current = job.pk
        try:
            run_job(job, self.worker, self.stopping.is_set)
        finally:
            self.current = None
        return True

    def _beat(self) -> None:
        last_recovery = time.monotonic()
        while not self.stopping.wait(timeout=settings.JOBS_HEARTBEAT_SECONDS):
            try:
                if self.current is not None:
                    queue.beat(self.worker, [self.current])
                if time.monotonic() - last_recovery >= settings.JOBS_STALE_SECONDS / 2:
                    last_recovery = time.monotonic()
                    queue.recover_orphans()
            except Exception:
                log.exception("Could not write the jobs' heartbeat")
            finally:
                _release_connections()

    def shut_down(self) -> int:
        """Stop claiming; the job in hand stops at its next step and goes back to the
        queue (whatever is still running after SHUTDOWN_WAIT is handed back here)."""
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout=SHUTDOWN_WAIT)
        try:
            return queue.hand_back(self.worker)
        finally:
            close_old_connections()


_runner: JobRunner | None = None
_lock = threading.Lock()
# Held while the process's runner stops: a second call (the drain's, then the stop's) waits
# for the first. Once stopped, a web process's next request starts no new runner.
_stopping = threading.Lock()
_stopped = False


def installed() -> JobRunner | None:
    return _runner


def start(worker: str, *, recover_everything: bool = False) -> JobRunner | None:
    """Start this process's job runner (once); None once `shut_down` stopped it."""
    global _runner
    with _lock:
        if _runner is None and not _stopped:
            _runner = JobRunner(worker)
            queue.on_enqueue(_notify)
            _runner.start(recover_everything=recover_everything)
        return _runner


def _notify() -> None:
    if _runner is not None:
        _runner.notify()


def ensure_started(worker: str) -> None:
    """From the web process's first request: start its runner unless workers do the jobs.
    Without Redis there is one process: whatever is still running was left by a restart."""
    if _runner is None and not _stopped and settings.JOBS_RUNNER_IN_SERVER:
        start(worker, recover_everything=not settings.REDIS_URL)


def shut_down() -> int:
    """The process is stopping or draining (calpico/shutdown.py, the worker command): its
    runner claims no more jobs and hands back the one in hand."""
    global _runner, _stopped
    with _stopping:
        with _lock:  # a runner `start` makes meanwhile is this one, or none
            _stopped = True
            runner, _runner = _runner, None
        return runner.shut_down() if runner is not None else 0


def run_pending(worker: str = "inline") -> int:
    """Do every job that is due now, in this thread (tests, the shell). Returns how many."""
    done = 0
    while (job := queue.claim_next(worker)) is not None:
        run_job(job, worker)
        done += 1
    return done

"""Durable jobs: recorded with a commit, claimed once, retried, recovered, handed back."""

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from jobs import queue, runner
from jobs.models import Job

pytestmark = pytest.mark.django_db

done: list[int] = []
failed_for_good: list[int] = []


def _work(job, context):
    if job.payload.get("explode"):
        raise RuntimeError("boom")
    context.check()
    done.append(job.payload["n"])


@pytest.fixture(autouse=True)
def _kind():
    done.clear()
    failed_for_good.clear()
    queue.register("test.work", _work, on_failure=lambda job: failed_for_good.append(job.pk))
    yield
    queue._kinds.pop("test.work", None)


def test_a_job_is_done_once():
    queue.enqueue("test.work", {"n": 1})
    assert runner.run_pending() == 1
    assert runner.run_pending() == 0
    assert done == [1]
    job = Job.objects.get()
    assert (job.status, job.attempts, job.worker) == (Job.Status.DONE, 1, "")
    assert job.finished_at is not None


def test_an_unknown_kind_is_refused_when_queued():
    with pytest.raises(ValueError):
        queue.enqueue("test.nobody", {})


def test_a_rolled_back_request_leaves_no_job():
    with pytest.raises(RuntimeError), transaction.atomic():
        queue.enqueue("test.work", {"n": 1})
        raise RuntimeError("the request failed")
    assert not Job.objects.exists()


def test_scheduled_work_waits_its_time():
    queue.enqueue("test.work", {"n": 1}, run_after=timezone.now() + dt.timedelta(hours=1))
    assert runner.run_pending() == 0
    Job.objects.update(run_after=timezone.now() - dt.timedelta(seconds=1))
    assert runner.run_pending() == 1


def test_a_failing_job_backs_off_then_fails_for_good():
    job = queue.enqueue("test.work", {"explode": True}, max_attempts=2)
    assert runner.run_pending() == 1
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert job.error == "RuntimeError: boom"
    assert job.run_after > timezone.now() + dt.timedelta(seconds=5)  # backed off
    assert failed_for_good == []
    Job.objects.update(run_after=timezone.now())
    assert runner.run_pending() == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 2)
    assert failed_for_good == [job.pk]


def test_retry_delays_grow_and_are_capped():
    assert queue.retry_delay(1) == dt.timedelta(seconds=10)
    assert queue.retry_delay(2) == dt.timedelta(seconds=20)
    assert queue.retry_delay(30) == dt.timedelta(hours=1)


def test_a_job_whose_process_died_runs_again(settings):
    queue.enqueue("test.work", {"n": 7})
    job = queue.claim_next("dead-process")
    assert job is not None
    assert queue.recover_orphans() == 0  # its heartbeat is fresh
    Job.objects.update(heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.JOBS_STALE_SECONDS + 1))
    assert queue.recover_orphans() == 1
    assert runner.run_pending() == 1
    assert done == [7]
    # The dead process's late end changes nothing.
    assert not queue.finish(job, "dead-process")


def test_a_stopping_process_hands_its_job_back_without_a_failed_attempt():
    queue.enqueue("test.work", {"n": 3})
    job = queue.claim_next("stopping")
    assert runner.run_job(job, "stopping", stopping=lambda: True) == Job.Status.QUEUED
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker) == (Job.Status.QUEUED, 0, "")
    assert runner.run_pending() == 1
    assert done == [3]


def test_a_job_taken_over_meanwhile_is_not_failed_by_its_old_process():
    queue.enqueue("test.work", {"explode": True})
    job = queue.claim_next("old")
    Job.objects.update(worker="new")
    assert queue.fail(job, "old", "late") == ""
    assert Job.objects.get().worker == "new"


def test_the_runner_thread_does_a_job_committed_in_this_process(settings, transactional_db):
    settings.JOBS_POLL_SECONDS = 30  # only the wake-up can make it this quick
    settings.JOBS_HEARTBEAT_SECONDS = 0.05
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:memorydb"):
        pytest.skip("threads share no in-memory SQLite database")
    finished = threading.Event()
    queue.register("test.signal", lambda job, context: finished.set())
    jobs = runner.JobRunner("thread")
    queue.on_enqueue(jobs.notify)
    jobs.start()
    try:
        with transaction.atomic():
            queue.enqueue("test.signal", {})
        assert finished.wait(timeout=10)
    finally:
        jobs.shut_down()
        queue._wake.remove(jobs.notify)
        queue._kinds.pop("test.signal", None)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_processes_never_claim_the_same_job():
    """SKIP LOCKED on PostgreSQL: concurrent claims take different rows."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    for n in range(20):
        queue.enqueue("test.work", {"n": n})
    claimed: list[int] = []
    lock = threading.Lock()

    def claim(name):
        try:
            while (job := queue.claim_next(name)) is not None:
                with lock:
                    claimed.append(job.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(Job.objects.values_list("pk", flat=True))

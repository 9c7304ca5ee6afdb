from django.db import models
from django.utils import timezone


class Job(models.Model):
    """A piece of work done after a commit, outside any request: a data export, push
    notifications and emails (notifications/jobs.py). Recorded in the transaction that asks for it, claimed by
    exactly one process (jobs/queue.py), done by the handler registered for its kind."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=50)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # Not before: a retry backs off, scheduled work (an export's expiry) waits its time.
    run_after = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    # Which process holds a running job, and when it last said it was alive (database clock).
    worker = models.CharField(max_length=100, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "run_after"], name="jobs_job_status_run_after")]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.kind}, {self.status})"

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def export_token() -> str:
    return secrets.token_urlsafe(24)


class DataExport(models.Model):
    """A person's "Download my data": built in the background by a durable job
    (privacy.export), offered as a ZIP to its owner only, until `expires_at`."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting to start"
        BUILDING = "building", "Being built"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_exports")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    # Under EXPORTS_ROOT: "<user id>/<token>.zip", a name nobody can guess or choose.
    token = models.CharField(max_length=64, unique=True, default=export_token)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"Export {self.pk} of {self.user_id} ({self.status})"

    @property
    def relative_path(self) -> str:
        return f"{self.user_id}/{self.token}.zip"

    @property
    def is_pending(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.BUILDING)

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and (now or timezone.now()) >= self.expires_at

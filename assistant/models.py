from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy

from rooms.models import Message, Room

NAME_MAX_LENGTH = 40
PERSONALITY_MAX_LENGTH = 2000
DEFAULT_NAME = "Assistant"


class ReplyMode(models.TextChoices):
    ALWAYS = "always", gettext_lazy("Always")
    MENTION = "mention", gettext_lazy("When mentioned")
    OFF = "off", gettext_lazy("Off")


class AssistantSettings(models.Model):
    """How the assistant behaves in one room. A room without a row uses the defaults."""

    room = models.OneToOneField(Room, on_delete=models.CASCADE, primary_key=True, related_name="assistant")
    name = models.CharField(max_length=NAME_MAX_LENGTH, default=DEFAULT_NAME)
    personality = models.TextField(max_length=PERSONALITY_MAX_LENGTH, blank=True)
    reply_mode = models.CharField(max_length=10, choices=ReplyMode.choices, default=ReplyMode.MENTION)
    # False: only the group's owner and admins may change the assistant.
    members_can_edit = models.BooleanField(default=True)

    class Meta:
        verbose_name = gettext_lazy("assistant settings")
        verbose_name_plural = "assistant settings"

    def __str__(self) -> str:
        return f"{self.name} in {self.room}"


class AssistantRun(models.Model):
    """One reply (or image) the assistant owes a room: the durable record of the work.

    Created in the transaction that stores the message asking for it, claimed by one
    runner, and finished in exactly one of done, failed or cancelled.
    """

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply"
        IMAGE = "image", "Image"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="assistant_runs")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REPLY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assistant_runs",
    )
    # The message that asked; the latest one when several arrived while a reply was running.
    trigger = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The assistant's message in the room, made when the run starts (or at once for a refusal).
    reply = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="assistant_runs"
    )
    model = models.CharField(max_length=100, blank=True)
    # What was sent to the model (chat messages, or the image prompt), kept for usage
    # questions and for reports about the reply. Never holds another user's memories.
    prompt = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=30, blank=True)
    error = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Which process holds a running run, and when it last said it was alive.
    worker = models.CharField(max_length=100, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One room's runs go in order: a second claim in the same room fails here.
            models.UniqueConstraint(
                fields=["room"], condition=Q(status="running"), name="assistant_one_running_run_per_room"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "id"]),
            models.Index(fields=["requested_by", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} in room {self.room_id} ({self.status})"

    @property
    def time_to_first_token(self) -> float | None:
        if self.started_at and self.first_token_at:
            return (self.first_token_at - self.started_at).total_seconds()
        return None

    @property
    def total_time(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @classmethod
    def running(cls, worker: str, kind: str, *, attempts: int) -> dict[str, Any]:
        """The fields of a run `worker` is doing now: the one definition, for a queued run
        claimed (assistant.runs) and for a run created running (assistant.services)."""
        image = kind == cls.Kind.IMAGE
        return {
            "status": cls.Status.RUNNING,
            "worker": worker,
            "model": settings.ASSISTANT_IMAGE_MODEL if image else settings.ASSISTANT_MODEL,
            "started_at": timezone.now(),  # compared with first_token_at: this host's clock
            "heartbeat_at": Now(),  # compared with other hosts' beats: the database's clock
            "attempts": attempts,
            "first_token_at": None,
        }


class Memory(models.Model):
    """Something a person asked their private assistant to remember. Used only in that
    person's private assistant room, never in a shared one."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name_plural = "memories"

    def __str__(self) -> str:
        # Shown by the admin (titles, delete confirmations), where the text is not.
        return f"Memory {self.pk} of {self.user}"

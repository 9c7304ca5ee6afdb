import html

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags


class Room(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct", "Direct message"
        GROUP = "group", "Group"
        # A person alone with the assistant (its direct_key is "assistant:<user id>").
        PRIVATE = "private", "My assistant"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=80, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # "<smaller user id>:<larger user id>" for direct rooms: one room per pair, enforced by
    # the database rather than by a check-then-insert that two requests could race.
    direct_key = models.CharField(max_length=50, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The highest sequence number handed out in this room; the next message takes +1.
    last_seq = models.PositiveBigIntegerField(default=0)
    last_message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="group") | Q(direct_key__isnull=False),
                name="rooms_room_direct_has_key",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Direct room {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("rooms:room", args=[self.pk])

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT

    @property
    def is_group(self) -> bool:
        return self.kind == self.Kind.GROUP

    @property
    def is_private(self) -> bool:
        return self.kind == self.Kind.PRIVATE


class Membership(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(default=timezone.now)
    # Everything up to and including this sequence number has been read.
    last_read_seq = models.PositiveBigIntegerField(default=0)
    # A muted room raises no toast or desktop notification, except for mentions of me.
    muted = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="rooms_membership_unique"),
        ]
        indexes = [models.Index(fields=["user", "room"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


class Message(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "Message"
        SYSTEM = "system", "System message"
        ASSISTANT = "assistant", "Assistant message"

    class State(models.TextChoices):
        """Where an assistant message is in its life; people's messages are always done."""

        DONE = "done", "Done"
        STREAMING = "streaming", "Streaming"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TEXT)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    body = models.TextField(blank=True)
    # Markdown rendered and sanitized when the message is written, so every page view
    # and every live push shows the same HTML without rendering it again.
    html = models.TextField(blank=True)
    mentioned_user_ids = models.JSONField(default=list, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # An assistant message: the assistant's name when it wrote this, and how far it got.
    persona = models.CharField(max_length=40, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DONE)
    # Under an assistant message: why it failed or stopped, in words for the room.
    note = models.CharField(max_length=300, blank=True)
    # An attached or generated image: re-encoded WebP under a random name, served only
    # to the room's members (rooms.views.message_image).
    image = models.ImageField(
        upload_to="attachments/", blank=True, width_field="image_width", height_field="image_height"
    )
    image_width = models.PositiveIntegerField(null=True, blank=True)
    image_height = models.PositiveIntegerField(null=True, blank=True)
    # Chosen by the sender's page; a retried send with the same id stores nothing new.
    client_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="rooms_message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                condition=Q(client_id__isnull=False),
                name="rooms_message_client_id_unique",
            ),
        ]
        ordering = ["room", "seq"]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"

    @property
    def is_system(self) -> bool:
        return self.kind == self.Kind.SYSTEM

    @property
    def is_assistant(self) -> bool:
        return self.kind == self.Kind.ASSISTANT

    @property
    def is_streaming(self) -> bool:
        return self.state == self.State.STREAMING

    @property
    def is_failed(self) -> bool:
        return self.state == self.State.FAILED

    @property
    def is_stopped(self) -> bool:
        return self.state == self.State.STOPPED

    @property
    def sender_name(self) -> str:
        if self.is_assistant:
            return self.persona or "Assistant"
        if self.is_system:
            return "Calpico"
        return self.author.name if self.author else "Deleted account"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def preview(self) -> str:
        """One line for the sidebar."""
        if self.is_deleted:
            return "message deleted"
        if self.is_assistant and self.is_streaming and not self.body:
            return f"{self.sender_name} is thinking…"
        if self.image and not self.body:
            return "Image"
        text = html.unescape(strip_tags(self.html)) if self.html else self.body
        return " ".join(text.split())[:120]

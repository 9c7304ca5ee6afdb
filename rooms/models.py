"""Rooms, memberships, messages, reactions, invites and reports.

Kept in one module, as Django apps keep their models (about 500 lines): the classes point
at each other, and splitting them would only move the imports around.
"""

import datetime as dt
import html
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.translation import gettext, gettext_lazy

from rooms import filetypes
from rooms.emoji import label


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
    # False: only the owner and admins create invite links.
    members_can_invite = models.BooleanField(default=True)
    # End-to-end encrypted (e2ee app, docs/e2ee.md): its messages are ciphertext the
    # server cannot read, and the assistant is kept out. Set when the room is made, never changed.
    encrypted = models.BooleanField(default=False)

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
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        # Removes members, deletes others' messages, manages invite links. The owner is
        # Room.owner, above every admin.
        ADMIN = "admin", "Admin"

    class Request(models.TextChoices):
        """A direct room someone I share no room with opened: mine to accept or not."""

        NONE = "", "Accepted"
        PENDING = "pending", "Message request"
        DECLINED = "declined", "Declined"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(default=timezone.now)
    # Everything up to and including this sequence number has been read.
    last_read_seq = models.PositiveBigIntegerField(default=0)
    # A muted room raises no toast or desktop notification, except for mentions of me.
    muted = models.BooleanField(default=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # Pending or declined requests are not in the room list and notify nothing.
    request = models.CharField(max_length=10, choices=Request.choices, default=Request.NONE, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="rooms_membership_unique"),
        ]
        indexes = [models.Index(fields=["user", "room"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


# The largest box a message image is shown in; static/calpico.css lets it shrink below that.
IMAGE_BOX = (420, 360)


class MessageQuerySet(models.QuerySet["Message"]):
    def with_file(self) -> "MessageQuerySet":
        """Messages carrying a file that is not a picture (search's `has:file`)."""
        return self.exclude(file="")

    def with_image(self) -> "MessageQuerySet":
        """Messages carrying a picture (search's `has:image`)."""
        return self.exclude(image="")


class Message(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "Message"
        SYSTEM = "system", "System message"
        ASSISTANT = "assistant", "Assistant message"
        # `body` holds an MLS ciphertext (base64) that only the members' browsers decrypt.
        ENCRYPTED = "encrypted", "Encrypted message"

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
    # A system message: what happened (rooms.system_events.EVENTS) and its parameters, so
    # each reader sees it in their language; `body` holds the default language's text.
    event = models.CharField(max_length=40, blank=True)
    event_params = models.JSONField(default=dict, blank=True)
    # Under an assistant message: why it failed or stopped, in words for the room.
    note = models.CharField(max_length=300, blank=True)
    # An attached or generated image: re-encoded WebP under a random name, served only
    # to the room's members (rooms.views.messages.message_image).
    image = models.ImageField(
        upload_to="attachments/", blank=True, width_field="image_width", height_field="image_height"
    )
    image_width = models.PositiveIntegerField(null=True, blank=True)
    image_height = models.PositiveIntegerField(null=True, blank=True)
    # An attached file that is not a picture (a PDF, an archive, anything), kept as it came
    # under a random name (never the sender's), downloaded only by the room's members
    # (rooms.views.messages.message_file). A message has an image or a file, not both.
    # The name is the sender's, cleaned (rooms.filetypes.clean_file_name); the type is
    # what its extension says, a label only.
    file = models.FileField(upload_to="files/", blank=True, max_length=200)
    file_name = models.CharField(max_length=filetypes.NAME_MAX_LENGTH, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    file_type = models.CharField(max_length=100, blank=True)
    # Chosen by the sender's page; a retried send with the same id stores nothing new.
    client_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Who removed it when it was not its author: "admin" (a room admin) or "moderator".
    removed_by = models.CharField(max_length=10, blank=True)
    # When its reactions last changed (None: never reacted to, so drawing it reads no
    # reactions); a page that was away catches up on the messages changed since.
    reactions_changed_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

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

    def get_absolute_url(self) -> str:
        """The room around this message, the message highlighted (by its place, `seq`)."""
        return reverse("rooms:message", args=[self.room_id, self.seq])

    @property
    def is_system(self) -> bool:
        return self.kind == self.Kind.SYSTEM

    @property
    def is_assistant(self) -> bool:
        return self.kind == self.Kind.ASSISTANT

    @property
    def is_encrypted(self) -> bool:
        return self.kind == self.Kind.ENCRYPTED

    @property
    def system_text(self) -> str:
        """A system message's text in the active language; the stored English body for a
        message written before events were stored, or whose event is unknown."""
        from rooms import system_events

        if self.event in system_events.EVENTS:
            try:
                return system_events.render(self.event, self.event_params)
            except (KeyError, TypeError, ValueError):
                pass
        return self.body

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
    def names_sender_in_preview(self) -> bool:
        """An assistant message's preview starts with its name, unless the preview is
        already "Planner is thinking…"."""
        return self.is_assistant and not (self.is_streaming and not self.body)

    @property
    def image_box(self) -> tuple[int, int] | None:
        """The image's size on the page: its own, scaled down to fit IMAGE_BOX, written on
        the <img> so the page keeps its place before the file arrives."""
        if not (self.image_width and self.image_height):
            return None
        scale = min(1, IMAGE_BOX[0] / self.image_width, IMAGE_BOX[1] / self.image_height)
        return max(1, round(self.image_width * scale)), max(1, round(self.image_height * scale))

    @property
    def file_url(self) -> str:
        return reverse("rooms:message_file", args=[self.room_id, self.pk])

    @property
    def file_kind(self) -> filetypes.FileKind:
        """The file card's icon and words for the attached file."""
        return filetypes.kind(self.file_name, self.file_type)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @cached_property
    def reaction_chips(self) -> list["ReactionChip"]:
        """Its reactions, one chip per emoji. Pages set this for all their messages at once
        (`rooms.queries.attach_reactions`); otherwise it is read here, for this message alone."""
        if self.reactions_changed_at is None:
            return []
        return reaction_chips(self.reactions.select_related("user").order_by("created_at", "pk"))

    @property
    def reactions_version(self) -> int:
        """When its reactions last changed, in microseconds: a page keeps the newest it was sent."""
        if self.reactions_changed_at is None:
            return 0
        return (self.reactions_changed_at - EPOCH) // dt.timedelta(microseconds=1)

    @property
    def preview(self) -> str:
        """One line for the sidebar."""
        if self.is_deleted:
            return gettext("message deleted")
        if self.is_system:
            return self.system_text[:120]  # one line, its non-breaking spaces kept
        if self.is_encrypted:
            # The server cannot read it: the browser shows the text once it decrypts it.
            return gettext("Encrypted message")
        if self.is_assistant and self.is_streaming and not self.body:
            return gettext("%(name)s is thinking…") % {"name": self.sender_name}
        # After "Planner: ", never nothing: the room shows the note saying why.
        if self.is_assistant and self.is_failed and not self.body and not self.image:
            return gettext("couldn't reply")
        if self.is_assistant and self.is_stopped and not self.body and not self.image:
            return gettext("stopped before replying")
        if self.image and not self.body:
            return gettext("Image")
        if self.file and not self.body:
            return f"📎 {self.file_name}"
        text = html.unescape(strip_tags(self.html)) if self.html else self.body
        return " ".join(text.split())[:120]


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Reaction(models.Model):
    """An emoji on a message from one member, or from the room's assistant: one row per
    (message, person, emoji). rooms/services/reactions.py writes them."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="reactions"
    )
    # The room's assistant reacted (no user): its name when it did, as on its messages.
    is_assistant = models.BooleanField(default=False)
    persona = models.CharField(max_length=40, blank=True)
    # The assistant's: the reason its decision gave (assistant.decider), shown on the chip to
    # the room, as visible as the reaction itself.
    reason = models.CharField(max_length=300, blank=True)
    # As the vendored emoji data set spells it (rooms.emoji.canonical).
    emoji = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(is_assistant=False, user__isnull=False) | Q(is_assistant=True, user__isnull=True),
                name="rooms_reaction_from_a_member_or_the_assistant",
            ),
            models.UniqueConstraint(
                fields=["message", "user", "emoji"],
                condition=Q(user__isnull=False),
                name="rooms_reaction_once_per_member",
            ),
            models.UniqueConstraint(
                fields=["message", "emoji"],
                condition=Q(is_assistant=True),
                name="rooms_reaction_once_per_assistant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message_id}"

    @property
    def reactor_name(self) -> str:
        if self.is_assistant:
            return self.persona or "Assistant"
        return self.user.name if self.user else "Deleted account"


@dataclass(frozen=True)
class Reactor:
    user_id: int | None  # None: the room's assistant
    name: str
    why: str = ""  # the assistant's reason for reacting


@dataclass(frozen=True)
class ReactionChip:
    """One emoji under a message: who gave it, in the order they did."""

    emoji: str
    label: str
    reactors: tuple[Reactor, ...]

    @property
    def count(self) -> int:
        return len(self.reactors)

    @property
    def user_ids(self) -> list[int]:
        return [r.user_id for r in self.reactors if r.user_id is not None]


def reaction_chips(reactions, hidden: Collection[int] = ()) -> list[ReactionChip]:
    """Chips from a message's reactions (oldest first), the emoji first given first; the
    reactions of `hidden` people (those the viewer blocked) left out."""
    grouped: dict[str, list[Reactor]] = {}
    for reaction in reactions:
        if reaction.user_id in hidden:
            continue
        grouped.setdefault(reaction.emoji, []).append(
            Reactor(reaction.user_id, reaction.reactor_name, reaction.reason if reaction.is_assistant else "")
        )
    return [ReactionChip(emoji, label(emoji), tuple(reactors)) for emoji, reactors in grouped.items()]


def invite_token() -> str:
    # 32 random bytes: 256 bits, far beyond guessing.
    return secrets.token_urlsafe(32)


class Invite(models.Model):
    """A shareable link into a group: /join/<token>/."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True, default=invite_token)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="invites_created"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: never
    max_uses = models.PositiveIntegerField(null=True, blank=True)  # None: unlimited
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["room", "revoked_at"])]

    def __str__(self) -> str:
        return f"Invite to {self.room} ({self.uses} uses)"

    def get_absolute_url(self) -> str:
        return reverse("rooms:join", args=[self.token])

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and (now or timezone.now()) >= self.expires_at

    @property
    def is_used_up(self) -> bool:
        return self.max_uses is not None and self.uses >= self.max_uses


class Report(models.Model):
    """A member's report of a message, with a snapshot taken when it was made."""

    class Reason(models.TextChoices):
        SPAM = "spam", gettext_lazy("Spam")
        HARASSMENT = "harassment", gettext_lazy("Harassment")
        OTHER = "other", gettext_lazy("Something else")

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DISMISSED = "dismissed", "Dismissed"
        ACTIONED = "actioned", "Action taken"

    message = models.ForeignKey(Message, null=True, on_delete=models.SET_NULL, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="reports_made"
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    text = models.TextField(max_length=1000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The message as it was (text, author, room), the ten before it, and for an assistant
    # reply the prompt it was given: what the moderator judges, whatever happens later.
    snapshot = models.JSONField(default=dict)
    room = models.ForeignKey(Room, null=True, on_delete=models.SET_NULL, related_name="+")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reports_received",
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "reporter"], name="rooms_report_once_per_reporter"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Report {self.pk} ({self.get_reason_display()}, {self.status})"


class ModerationAction(models.Model):
    """The audit log: every moderator action, who, what, when and why. Never edited."""

    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    action = models.CharField(max_length=40)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    report = models.ForeignKey(
        Report, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.moderator} {self.action} at {self.created_at:%Y-%m-%d %H:%M}"


class Notice(models.Model):
    """A one-line notice for a person (a moderator acted on their report), shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notices")
    text = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "seen_at"])]

    def __str__(self) -> str:
        return self.text

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
    # It decides after each pause in the conversation (assistant/decider.py); mentions
    # always get a reply. The default for a new group (see `default_reply_mode`).
    AUTO = "auto", gettext_lazy("Automatically")
    ALWAYS = "always", gettext_lazy("Every message")
    MENTION = "mention", gettext_lazy("When mentioned")
    OFF = "off", gettext_lazy("Off")


def default_reply_mode(room: Room) -> str:
    """A room without settings: groups decide for themselves, direct rooms wait to be asked.
    Groups that existed before Automatically got a settings row keeping When mentioned
    (migration 0003)."""
    return ReplyMode.AUTO if room.is_group else ReplyMode.MENTION


class AssistantSettings(models.Model):
    """How the assistant behaves in one room. A room without a row uses the defaults."""

    room = models.OneToOneField(Room, on_delete=models.CASCADE, primary_key=True, related_name="assistant")
    name = models.CharField(max_length=NAME_MAX_LENGTH, default=DEFAULT_NAME)
    personality = models.TextField(max_length=PERSONALITY_MAX_LENGTH, blank=True)
    reply_mode = models.CharField(max_length=10, choices=ReplyMode.choices, default=ReplyMode.MENTION)
    # False: only the group's owner and admins may change the assistant.
    members_can_edit = models.BooleanField(default=True)
    # "Quiet for an hour": until then Automatically behaves as When mentioned.
    quiet_until = models.DateTimeField(null=True, blank=True)
    # Web search (assistant/search.py), when the server has SEARCH_URL: the owner and
    # admins of a group (either person in a direct room) may turn it off for the room.
    web_search = models.BooleanField(default=True)
    # The rolling summary of the room's older history (assistant/summary.py): what replies
    # see before the recent messages. Made from this room's messages only, never from
    # memories; any member may clear it; deleted with the room.
    summary = models.TextField(blank=True)
    # The last message (by seq) the summary covers: older messages are not sent raw.
    summary_through_seq = models.BigIntegerField(default=0)
    summary_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("assistant settings")
        verbose_name_plural = "assistant settings"

    def __str__(self) -> str:
        return f"{self.name} in {self.room}"


def decider_model() -> str:
    return settings.ASSISTANT_DECIDER_MODEL or settings.ASSISTANT_MODEL


class AssistantRun(models.Model):
    """One reply (or image) the assistant owes a room: the durable record of the work.

    Created in the transaction that stores the message asking for it, claimed by one
    runner, and finished in exactly one of done, failed or cancelled.
    """

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply"
        IMAGE = "image", "Image"
        # Answers only the asker sees (assistant/asking.py): their output goes to a
        # PrivateAnswer, never to a room message.
        CATCH_UP = "catch_up", "Catch-up"
        PRIVATE = "private", "Private ask"
        # Whether to speak, in a room set to Automatically: no message of its own.
        DECISION = "decision", "Decision"
        # The room's rolling summary: no message of its own, never holds up a reply.
        SUMMARY = "summary", "Summary"

    class Decision(models.TextChoices):
        RESPOND = "respond", "Respond"
        REACT = "react", "React"
        SILENT = "silent", "Silent"

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
    # Not claimed before then: a decision waits for a pause in the conversation.
    not_before = models.DateTimeField(null=True, blank=True)
    # A reply nobody asked for, and the decision behind it (or the decision run itself):
    # what the model chose and the one-line reason it gave, shown as "Why?".
    unprompted = models.BooleanField(default=False)
    decision = models.CharField(max_length=10, choices=Decision.choices, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One room's runs go in order: a second claim in the same room fails here.
            # Private runs write nothing in the room, so they hold up nobody's reply; a
            # summary runs beside the room's replies (never holding one up), one at a time.
            models.UniqueConstraint(
                fields=["room"],
                condition=Q(status="running") & ~Q(kind__in=["catch_up", "private", "summary"]),
                name="assistant_one_running_run_per_room",
            ),
            models.UniqueConstraint(
                fields=["room"],
                condition=Q(status="running", kind="summary"),
                name="assistant_one_running_summary_per_room",
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
        models_by_kind: dict[str, str] = {
            cls.Kind.IMAGE: settings.ASSISTANT_IMAGE_MODEL,
            cls.Kind.DECISION: decider_model(),
            cls.Kind.SUMMARY: decider_model(),
        }
        return {
            "status": cls.Status.RUNNING,
            "worker": worker,
            "model": models_by_kind.get(kind, settings.ASSISTANT_MODEL),
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


PRIVATE_KINDS = (AssistantRun.Kind.CATCH_UP, AssistantRun.Kind.PRIVATE)


class PrivateAnswer(models.Model):
    """An answer inside a shared room that only its asker sees: a catch-up or a private
    ask. A table of its own, so no query path over the room's messages (history, search,
    unread counts, exports, the admin's message list, moderation snapshots, other people's
    prompts) can ever return it. See docs/assistant.md, "Private answers"."""

    class State(models.TextChoices):
        THINKING = "thinking", "Thinking"
        STREAMING = "streaming", "Streaming"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="private_answers"
    )
    kind = models.CharField(max_length=10, choices=[(k.value, k.label) for k in PRIVATE_KINDS])
    run = models.OneToOneField(
        AssistantRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="private_answer"
    )
    question = models.TextField(blank=True)
    # Catch-up: the asker's read position when they asked; it summarizes what came after.
    since_seq = models.PositiveBigIntegerField(default=0)
    body = models.TextField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.THINKING)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["room", "user", "id"])]

    def __str__(self) -> str:
        # Shown by the admin, where the text is not.
        return f"Private answer {self.pk} of {self.user_id}"


class BudgetUnit(models.TextChoices):
    TOKENS = "tokens", gettext_lazy("tokens")
    RUNS = "runs", gettext_lazy("runs")


class RoomBudget(models.Model):
    """A room's monthly AI budget (no row, or no limit: unlimited)."""

    room = models.OneToOneField(Room, on_delete=models.CASCADE, primary_key=True, related_name="ai_budget")
    unit = models.CharField(max_length=10, choices=BudgetUnit.choices, default=BudgetUnit.TOKENS)
    limit = models.PositiveIntegerField(null=True, blank=True)
    # The first day of the month whose 80% notice was posted, so it is posted once.
    warned_month = models.DateField(null=True, blank=True)
    # Likewise for the notice that it is used up.
    used_up_month = models.DateField(null=True, blank=True)

    def __str__(self) -> str:
        return f"AI budget of room {self.room_id}"


class BudgetUsage(models.Model):
    """What one member's runs of one kind cost a room in one month: counted once, at each
    run's finish (assistant.budget.record), with F() updates."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    month = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=10)
    runs = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    # Tokens of runs whose server reported no usage (estimated from the text).
    estimated_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "month", "user", "kind"],
                name="assistant_budget_usage_once",
            )
        ]

    def __str__(self) -> str:
        return f"AI use in room {self.room_id}, {self.month:%Y-%m}"

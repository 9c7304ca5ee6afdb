"""Every change the assistant makes: its settings per room, the runs it owes, memories.

Like rooms.services, each `do_*` function validates, writes in one transaction and
announces after commit. Runs are queued by `queue_for_message`, which rooms calls (the hook registered in
`rooms.hooks`) inside the transaction that stores a person's message.
"""

import datetime as dt
import functools
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import User
from assistant import budget, dispatch
from assistant.files import reads_slowly
from assistant.models import (
    NAME_MAX_LENGTH,
    PERSONALITY_MAX_LENGTH,
    PRIVATE_KINDS,
    AssistantRun,
    AssistantSettings,
    ReplyMode,
    decider_model,
    default_reply_mode,
)
from assistant.private import do_add_memory
from calpico.text import check_no_direction_overrides, visible_characters
from rooms.access import can_administer, is_owner, parse_id
from rooms.hooks import AfterCommit
from rooms.live import send_room_fragment
from rooms.models import Membership, Message, Room
from rooms.services import (
    do_post_assistant_message,
    do_post_system_message,
    do_update_assistant_message,
)

IMAGE_COMMAND = "/image"
REMEMBER = re.compile(r"^\s*remember\s+that\s+(?P<text>.+)", re.IGNORECASE | re.DOTALL)
# Refusals made before any work: they never count against the daily limit.
NOT_CONFIGURED = "not_configured"
DAILY_LIMIT = "daily_limit"
BUDGET_USED_UP = "budget"
REFUSAL_CODES = (NOT_CONFIGURED, DAILY_LIMIT, BUDGET_USED_UP)


def is_configured() -> bool:
    return bool(settings.OPENAI_API_KEY)


NOT_CONFIGURED_TEXT = (
    "The assistant is not configured on this server yet: an administrator needs to set "
    "OPENAI_API_KEY (and OPENAI_BASE_URL for a self-hosted model)."
)


def settings_for(room: Room) -> AssistantSettings:
    """The room's assistant settings; the defaults (unsaved) if nobody changed them."""
    try:
        return room.assistant
    except AssistantSettings.DoesNotExist:
        # Kept on the room like a loaded one, so asking again costs no query.
        room.assistant = AssistantSettings(room=room, reply_mode=default_reply_mode(room))
        return room.assistant


# Why an end-to-end encrypted room has no assistant, wherever that is asked.
ENCRYPTED_NO_ASSISTANT = gettext_lazy(
    "This conversation is end-to-end encrypted: the assistant can't be enabled here, because "
    "it would have to read your messages on the server."
)


def can_change_assistant(user: User, room: Room, assistant: AssistantSettings) -> bool:
    if room.encrypted:
        return False
    if room.is_group:
        return assistant.members_can_edit or can_administer(user, room)
    return True  # a direct room's two members, or the owner of a private room


def can_control_search(user: User, room: Room) -> bool:
    """Who turns web search on or off for the room: a group's owner and admins, either
    person of a direct room, the owner of a private one; only where the server has it."""
    if not settings.SEARCH_URL or room.encrypted:
        return False
    return can_administer(user, room) if room.is_group else True


def mentions_assistant(body: str, name: str) -> bool:
    """`@assistant` or `@<its name>`, in any case, as a whole word."""
    names = {"assistant", name.strip().lower()}
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True) if n)
    return re.search(rf"(?<![\w@])@(?:{pattern})(?![\w])", body, re.IGNORECASE) is not None


# "Ada, what do you think?", "hey Ada …?", "… right, Ada?": said to it by name, without "@".
ADDRESS_PREFIX = r"^\W*(?:(?:hey|hi|hello|ok|okay|so|and|dear|salut|bonjour)\W+)?"


def addresses_assistant(body: str, name: str) -> bool:
    """A question or request put to the assistant by its name without "@": the name opens the
    message followed by a comma, colon or question, or closes a question after a comma. Counts
    as a mention."""
    names = {"assistant", name.strip().lower()} - {""}
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    opening = re.search(rf"{ADDRESS_PREFIX}(?:{pattern})\s*[,:?!]", body, re.IGNORECASE)
    closing = re.search(rf",\s*(?:{pattern})\s*[?!.]*\s*$", body, re.IGNORECASE)
    return opening is not None or closing is not None


def clean_assistant_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not visible_characters(name):
        raise ValidationError(_("Give the assistant a name."), code="empty")
    check_no_direction_overrides(name, "The assistant's name")
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(
            _("The name is at most %(limit)s characters.") % {"limit": NAME_MAX_LENGTH}, code="too_long"
        )
    if "@" in name:
        raise ValidationError(_("The name cannot contain “@”."), code="invalid")
    return name


def clean_personality(text: str) -> str:
    text = (text or "").replace("\r\n", "\n").strip()
    if len(text) > PERSONALITY_MAX_LENGTH:
        raise ValidationError(
            _("The personality is at most %(limit)s characters; this one has %(length)s.")
            % {
                "limit": number_format(PERSONALITY_MAX_LENGTH, force_grouping=True),
                "length": number_format(len(text), force_grouping=True),
            },
            code="too_long",
        )
    return text


def do_update_assistant(
    actor: User,
    room: Room,
    *,
    name: str,
    personality: str,
    reply_mode: str,
    members_can_edit: bool | None = None,
    web_search: bool | None = None,
) -> AssistantSettings:
    """Change the room's assistant; each change is told to the room as a system message.

    `members_can_edit` is only the owner's to change, in a group.
    """
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room.pk)
        assistant = settings_for(room)
        if room.encrypted:
            raise PermissionDenied(ENCRYPTED_NO_ASSISTANT)
        if not can_change_assistant(actor, room, assistant):
            raise PermissionDenied(_("Only the group's owner and admins can change the assistant here."))
        name = clean_assistant_name(name)
        personality = clean_personality(personality)
        if reply_mode not in ReplyMode.values:
            raise ValidationError(_("Choose when the assistant replies."), code="reply_mode")
        notes = []
        if name != assistant.name:
            notes.append(("assistant_renamed", {"name": name}))
        if personality != assistant.personality:
            notes.append(
                ("assistant_personality_changed" if personality else "assistant_personality_cleared", {})
            )
        if reply_mode != assistant.reply_mode:
            notes.append((f"assistant_replies_{ReplyMode(reply_mode).value}", {}))
            assistant.quiet_until = None  # a mode chosen now holds from now
        if members_can_edit is not None and members_can_edit != assistant.members_can_edit:
            if not is_owner(actor, room):
                raise PermissionDenied(_("Only the group's owner decides who changes the assistant."))
            notes.append(("assistant_members_edit" if members_can_edit else "assistant_admins_edit", {}))
            assistant.members_can_edit = members_can_edit
        if web_search is not None and web_search != assistant.web_search:
            if not can_control_search(actor, room):
                raise PermissionDenied(
                    _("Only the group's owner and admins decide whether the assistant searches the web.")
                )
            notes.append(("assistant_search_on" if web_search else "assistant_search_off", {}))
            assistant.web_search = web_search
        renamed = name != assistant.name
        assistant.name, assistant.personality, assistant.reply_mode = name, personality, reply_mode
        assistant.save()
        room.assistant = assistant
        for event, params in notes:
            do_post_system_message(room.pk, event, actor=actor, **params)
        if renamed:
            # Open pages suggest and hint the new name from now on.
            room_id = room.pk
            context = {"assistant": assistant}
            transaction.on_commit(
                lambda: send_room_fragment(
                    room_id, lambda: render_to_string("assistant/live/renamed.html", context)
                )
            )
    return assistant


# Queueing runs


def _utc_midnight(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def runs_today(user: User) -> int:
    since = _utc_midnight(timezone.now())
    return (
        AssistantRun.objects.filter(requested_by=user, created_at__gte=since)
        .exclude(error_code__in=REFUSAL_CODES)
        .count()
    )


def daily_limit_text() -> str:
    now = timezone.now()
    reset = _utc_midnight(now) + dt.timedelta(days=1)
    hours, rest = divmod(int((reset - now).total_seconds()), 3600)
    wait = f"{hours} h {rest // 60} min" if hours else f"{rest // 60 + 1} min"
    return (
        f"You have used today’s {settings.ASSISTANT_DAILY_RUNS} assistant requests. "
        f"The limit resets at midnight UTC, in {wait}."
    )


def _refuse(
    room: Room, trigger: Message, user: User, kind: str, code: str, text: str, persona: str, prompt=None
) -> None:
    """Record a run that ends before it starts, and say why in the room."""
    reply = do_post_assistant_message(
        room.pk, persona=persona, note=text, state=Message.State.FAILED, reply_to=trigger
    )
    AssistantRun.objects.create(
        room=room,
        kind=kind,
        status=AssistantRun.Status.FAILED,
        requested_by=user,
        trigger=trigger,
        reply=reply,
        error_code=code,
        error=text[:300],
        finished_at=timezone.now(),
        prompt=prompt or [],  # an /image prompt, for Retry
    )


def _queue(
    room: Room, trigger: Message, user: User, kind: str, persona: str, prompt=None
) -> AfterCommit | None:
    """Record the run `trigger` asks for (or the refusal), and have it start when the post
    commits. Returns what to call after commit (rooms.hooks.AfterCommit): start the run
    here, and once the room has been shown `trigger`, show the reply's message."""
    if not is_configured():
        _refuse(room, trigger, user, kind, NOT_CONFIGURED, NOT_CONFIGURED_TEXT, persona, prompt)
        return None
    if runs_today(user) >= settings.ASSISTANT_DAILY_RUNS:
        _refuse(room, trigger, user, kind, DAILY_LIMIT, daily_limit_text(), persona, prompt)
        return None
    used_up = budget.refusal(room)
    if used_up:
        _refuse(room, trigger, user, kind, BUDGET_USED_UP, used_up, persona, prompt)
        return None
    # The room's unfinished runs (we hold its lock, so no new ones appear meanwhile).
    unfinished = list(
        AssistantRun.objects.filter(
            room=room, status__in=(AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING)
        )
        .exclude(kind__in=PRIVATE_KINDS)
        .exclude(kind=AssistantRun.Kind.SUMMARY)  # beside replies, never before them
        .only("kind", "status", "reply", "trigger")
        .order_by("id")
    )
    if kind == AssistantRun.Kind.REPLY:
        # Messages arriving while a new reply waits to start are answered together, once
        # (not a retry, which answers in its own older message). It stays counted
        # against whoever asked first.
        waiting = next(
            (
                run
                for run in unfinished
                if run.kind == kind and run.status == AssistantRun.Status.QUEUED and run.reply_id is None
            ),
            None,
        )
        if waiting is not None:
            waiting.trigger = trigger
            waiting.save(update_fields=["trigger"])
            return None
    # This process's runner can start it at once when it has a free slot and the room has
    # nothing before it: then the run is created running, for it, and no claim is needed
    # after commit.
    runner = dispatch.installed()
    here = None if unfinished or runner is None or not runner.has_free_slot() else runner.worker
    if here is not None and kind == AssistantRun.Kind.REPLY and reads_slowly(trigger):
        # Prepared right here, before the room is shown the post, a run would read its PDF
        # (in a process of its own, up to ASSISTANT_FILE_SECONDS) on the post's path: the
        # runner's own thread does it instead.
        here = None
    fields = AssistantRun.running(here, kind, attempts=1) if here else {}
    try:
        with transaction.atomic():
            run = AssistantRun.objects.create(
                room=room, kind=kind, requested_by=user, trigger=trigger, prompt=prompt or [], **fields
            )
    except IntegrityError:  # a run of this room started elsewhere a moment ago: queue
        here = None
        run = AssistantRun.objects.create(
            room=room, kind=kind, requested_by=user, trigger=trigger, prompt=prompt or []
        )
    show = functools.partial(dispatch.show_reply, run.pk)
    if here is not None:
        # Created running for this process's runner: right after commit, before the room
        # is told of the question, it builds the prompt and sends the request; the reply's
        # message is shown after the question.
        return AfterCommit(
            start=functools.partial(dispatch.run_queued, run.pk, started=True), after_shown=show
        )
    # Queued: the runner is woken once the room has seen the question, so a reply it
    # claims cannot be shown before it.
    transaction.on_commit(functools.partial(dispatch.run_queued, run.pk))
    return AfterCommit(after_shown=show)


def clean_image_prompt(body: str) -> str | None:
    """The prompt of an `/image <prompt>` message, None for any other message."""
    if (
        not body.lower().startswith(IMAGE_COMMAND)
        or body[len(IMAGE_COMMAND) : len(IMAGE_COMMAND) + 1].strip()
    ):
        return None
    prompt = body[len(IMAGE_COMMAND) :].strip()
    if not prompt:
        raise ValidationError(
            "Say what to draw: /image a lighthouse at dusk, watercolour.", code="image_prompt"
        )
    return prompt


def queue_for_message(message: Message, membership: Membership) -> AfterCommit | None:
    """Decide whether a person's new message asks the assistant for something, and queue
    it: the hook rooms calls inside the transaction storing the message, which holds the
    room's lock (rooms.hooks). Returns what to call after commit (rooms.hooks.AfterCommit)."""
    room, user = message.room, membership.user
    if room.encrypted:
        return None  # the assistant is kept out: it could not read the message anyway
    assistant = settings_for(room)
    image_prompt = clean_image_prompt(message.body)
    if image_prompt is not None:
        return _queue(
            room, message, user, AssistantRun.Kind.IMAGE, assistant.name, prompt={"prompt": image_prompt}
        )
    if room.is_private:
        remembered = REMEMBER.match(message.body)
        if remembered:
            try:
                memory = do_add_memory(user, remembered.group("text"))
            except ValidationError as exc:
                do_post_system_message(room.pk, "memory_not_saved", actor=user, reason=exc.messages[0])
            else:
                do_post_system_message(room.pk, "memory_saved", actor=user, text=memory.text)
        return _queue(room, message, user, AssistantRun.Kind.REPLY, assistant.name)
    mode = assistant.reply_mode
    if mode == ReplyMode.OFF:
        return None
    if mode == ReplyMode.AUTO and is_quiet(assistant):
        mode = ReplyMode.MENTION  # "quiet for an hour"
    mentioned = mentions_assistant(message.body, assistant.name)
    if mode == ReplyMode.AUTO and not mentioned:
        # Said to it by name counts as a mention here; no decision needed.
        mentioned = addresses_assistant(message.body, assistant.name)
    if mode in (ReplyMode.ALWAYS, ReplyMode.AUTO) and not mentioned and not is_configured():
        return None  # the settings panel says it is not configured; no notice under every message
    if mode in (ReplyMode.ALWAYS, ReplyMode.AUTO) and not mentioned and budget.refusal(room):
        return None  # the room was told once it is used up; no refusal under every message
    if mode == ReplyMode.ALWAYS or mentioned:
        return _queue(room, message, user, AssistantRun.Kind.REPLY, assistant.name)
    if mode == ReplyMode.AUTO:
        _queue_decision(room, message)
    return None


def is_quiet(assistant: AssistantSettings) -> bool:
    return assistant.quiet_until is not None and assistant.quiet_until > timezone.now()


# A decision is put off by each new message, up to this many pauses after the first.
DECIDE_MAX_DEFER = 4


def _queue_decision(room: Room, trigger: Message) -> None:
    """After a person's message in a room set to Automatically: have the model decide,
    once the conversation pauses, whether to speak (assistant/decider.py). Messages arriving
    before the decision starts join it (its trigger moves to the latest, its start later);
    at most one decision waits and one runs per room. Nobody's allowance is touched."""
    if not decider_model():
        return
    not_before = timezone.now() + dt.timedelta(seconds=settings.ASSISTANT_DECIDE_PAUSE_SECONDS)
    waiting = (
        AssistantRun.objects.filter(
            room=room, kind=AssistantRun.Kind.DECISION, status=AssistantRun.Status.QUEUED
        )
        .order_by("id")
        .first()
    )
    if waiting is not None:
        # A room that never pauses still gets a decision now and then.
        latest = waiting.created_at + dt.timedelta(
            seconds=settings.ASSISTANT_DECIDE_PAUSE_SECONDS * DECIDE_MAX_DEFER
        )
        waiting.trigger, waiting.not_before = (
            trigger,
            min(not_before, latest),
        )
        waiting.save(update_fields=["trigger", "not_before"])
        return
    # No runner is woken: it could do nothing before the pause, and finds the decision at
    # its next look after it (every ASSISTANT_HEARTBEAT_SECONDS at most).
    AssistantRun.objects.create(
        room=room,
        kind=AssistantRun.Kind.DECISION,
        trigger=trigger,
        not_before=not_before,
        model=decider_model(),
    )


def do_quiet_for_an_hour(user: User, room: Room) -> bool:
    """Any member: the assistant answers only mentions for the next hour, as the room is told.
    Only a room set to Automatically has anything to quiet, and a second press within the
    hour changes nothing (nor tells the room again). Returns whether it changed."""
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room.pk)
        assistant = settings_for(room)
        if room.encrypted or assistant.reply_mode != ReplyMode.AUTO or is_quiet(assistant):
            return False
        assistant.quiet_until = timezone.now() + dt.timedelta(hours=1)
        assistant.save()
        # Whatever it was about to decide is dropped: nobody wants it now.
        AssistantRun.objects.filter(
            room=room, kind=AssistantRun.Kind.DECISION, status=AssistantRun.Status.QUEUED
        ).update(status=AssistantRun.Status.CANCELLED, finished_at=timezone.now())
        do_post_system_message(room.pk, "assistant_quiet_hour", actor=user)
    return True


# Stop and retry


@dataclass(frozen=True)
class RunAction:
    run: AssistantRun
    changed: bool


def access_run_for_reply(membership: Membership, message_id) -> AssistantRun:
    """The latest run behind an assistant message in the member's room, or Http404."""
    from django.http import Http404

    message_id = parse_id(message_id)
    if message_id is None:
        raise Http404(_("No such reply."))
    run = (
        AssistantRun.objects.select_related("reply", "trigger")
        .filter(room_id=membership.room_id, reply_id=message_id)
        .order_by("-id")
        .first()
    )
    if run is None:
        raise Http404(_("No such reply."))
    return run


def do_stop_run(user: User, run: AssistantRun) -> RunAction:
    """Stop a reply any member of the room asked for; the text so far stays."""
    with transaction.atomic():
        run = AssistantRun.objects.select_for_update().get(pk=run.pk)
        if run.status == AssistantRun.Status.QUEUED:
            run.status = AssistantRun.Status.CANCELLED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            # A retried or recovered run already shows its message as "thinking".
            reply = Message.objects.filter(pk=run.reply_id, deleted_at__isnull=True).first()  # type: ignore[misc]  # None finds nothing
            if reply is not None:
                do_update_assistant_message(
                    reply, body=reply.body, state=Message.State.STOPPED, note="Stopped."
                )
            return RunAction(run, True)
        if run.status != AssistantRun.Status.RUNNING or run.cancel_requested:
            return RunAction(run, False)
        run.cancel_requested = True
        run.save(update_fields=["cancel_requested"])
        transaction.on_commit(functools.partial(dispatch.stop, run.pk))
    return RunAction(run, True)


def do_retry_run(user: User, run: AssistantRun) -> RunAction:
    """Try a failed reply again, in the same message."""
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=run.room_id)
        run = AssistantRun.objects.select_related("reply").get(pk=run.pk)
        if run.status != AssistantRun.Status.FAILED or (run.reply is not None and run.reply.is_deleted):
            return RunAction(run, False)
        if AssistantRun.objects.filter(reply_id=run.reply_id, id__gt=run.pk).exists():
            return RunAction(run, False)  # someone pressed Retry first
        assistant = settings_for(room)
        if not is_configured():
            raise ValidationError(NOT_CONFIGURED_TEXT, code=NOT_CONFIGURED)
        if runs_today(user) >= settings.ASSISTANT_DAILY_RUNS:
            raise ValidationError(daily_limit_text(), code=DAILY_LIMIT)
        # A refusal for a used-up budget is a failed reply with Retry: it stays refused.
        used_up = budget.refusal(room)
        if used_up:
            raise ValidationError(used_up, code=BUDGET_USED_UP)
        retry = AssistantRun.objects.create(
            room=room,
            kind=run.kind,
            requested_by=user,
            trigger=run.trigger,
            reply=run.reply,
            prompt=run.prompt if run.kind == AssistantRun.Kind.IMAGE else [],
        )
        if run.reply is not None:
            do_update_assistant_message(
                run.reply, body="", state=Message.State.STREAMING, persona=assistant.name
            )
        transaction.on_commit(functools.partial(dispatch.run_queued, retry.pk))
    return RunAction(retry, True)


def add_run_to_snapshot(message: Message, snapshot: dict) -> None:
    """A report of an assistant reply keeps the run behind it: model, who asked, and the
    prompt it was given (the `rooms.hooks.report_snapshot` hook)."""
    if not message.is_assistant:
        return
    run = AssistantRun.objects.filter(reply=message).select_related("requested_by").order_by("-id").first()
    if run is None:
        return
    snapshot["assistant_run"] = {
        "id": run.pk,
        "model": run.model,
        "status": run.status,
        "requested_by": run.requested_by.username if run.requested_by else None,
        # A private room's prompt holds its owner's memories and conversation: never
        # copied to moderators.
        "prompt": "(private conversation, not kept)" if message.room.is_private else run.prompt,
    }

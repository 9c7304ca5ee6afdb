"""The room's rolling summary: what the assistant remembers of history too old to send raw.

When a reply is prepared (`runs._prepare`), `queue_summary_if_due` looks at how many
messages the room has after what the summary covers; past ASSISTANT_SUMMARY_AFTER_MESSAGES
it queues a run of kind "summary" (one at a time per room). That run is claimed like any
other but runs beside the room's replies, never in their way (its own one-running
constraint, `runs.claim_next`). It folds the messages older than the newest
ASSISTANT_SUMMARY_KEEP_RECENT into the summary, oldest first within
ASSISTANT_SUMMARY_INPUT_TOKENS, with one non-streamed call, and stores the text on the
room's `AssistantSettings` with the last message it covers (`summary_through_seq`).

Replies then see the personality, the summary, and only the messages after it
(`prompt.build_chat_prompt`). The summary is made from this room's messages and the
previous summary only: never from another room, never from memories (which are not
messages), and not at all in a private assistant room. Members read it in the room's
settings and any of them may clear it (`do_clear_summary`); it goes with the room.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from openai.types.chat import ChatCompletion

from accounts.models import User
from assistant import budget
from assistant.models import AssistantRun, AssistantSettings
from assistant.prompt import estimate_tokens
from rooms.models import Message, Room

log = logging.getLogger(__name__)

SUMMARY_MAX_CHARS = 4000
SUMMARY_MAX_TOKENS = 600


def _settings(room: Room) -> AssistantSettings:
    from assistant.services import settings_for

    return settings_for(room)


def _readable(room: Room):
    return Message.objects.filter(room=room, deleted_at__isnull=True).exclude(kind=Message.Kind.SYSTEM)


def queue_summary_if_due(room: Room, assistant: AssistantSettings) -> bool:
    """Queue a summary run if the room has many messages the summary does not cover yet.
    Returns whether one was queued."""
    if room.is_private or settings.ASSISTANT_SUMMARY_AFTER_MESSAGES <= 0:
        return False
    threshold = settings.ASSISTANT_SUMMARY_AFTER_MESSAGES
    uncovered = _readable(room).filter(seq__gt=assistant.summary_through_seq)
    if uncovered.values("pk")[:threshold].count() < threshold:
        return False
    unfinished = AssistantRun.objects.filter(
        room=room,
        kind=AssistantRun.Kind.SUMMARY,
        status__in=(AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING),
    )
    if unfinished.exists():
        return False
    try:
        AssistantRun.objects.create(room=room, kind=AssistantRun.Kind.SUMMARY)
    except IntegrityError:
        return False
    return True


def summary_prompt(run: AssistantRun, assistant: AssistantSettings) -> list[dict]:
    """The call that folds older messages into the summary. Marks on the run (its trigger)
    the last message folded in."""
    room = run.room
    recent = list(
        _readable(room)
        .order_by("-seq")
        .values_list("seq", flat=True)[: settings.ASSISTANT_SUMMARY_KEEP_RECENT]
    )
    cutoff = recent[-1] if recent else 0
    rows = (
        _readable(room)
        .filter(seq__gt=assistant.summary_through_seq, seq__lt=cutoff)
        .order_by("seq")
        .values_list("pk", "kind", "state", "body", "file_name", "author__display_name", "author__username")
    )
    budget = settings.ASSISTANT_SUMMARY_INPUT_TOKENS
    lines: list[str] = []
    last_pk = None
    for pk, kind, state, body, file_name, display_name, username in rows.iterator():
        if kind == Message.Kind.ASSISTANT:
            if state != Message.State.DONE or not body:
                continue
            author = assistant.name
        else:
            author = (display_name or username) if username else "Deleted account"
        if file_name:
            body = f"{body} [file: {file_name}]".strip()
        line = f"{author}: {body}"
        cost = estimate_tokens(line)
        if cost > budget and lines:
            break
        budget -= cost
        lines.append(line)
        last_pk = pk
    AssistantRun.objects.filter(pk=run.pk).update(trigger_id=last_pk)
    system = (
        f"You keep the memory of {assistant.name}, an AI assistant in a group chat, about the "
        "older part of this room's conversation. Write a concise summary (at most 250 words, "
        "plain sentences or short bullet points) that keeps who said what that matters: "
        "decisions, plans, dates, facts, open questions and people's stated preferences. "
        "Merge it with the previous summary; drop small talk. Write only the summary."
    )
    previous = assistant.summary or "(none yet)"
    conversation = "\n".join(lines) or "(nothing new)"
    user = f"Previous summary:\n{previous}\n\nOlder messages to fold in:\n{conversation}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def ask_for_summary(client: Any, *, model: str, messages: list[dict[str, Any]]) -> tuple[str, Any]:
    body = {"model": model, "messages": messages, "max_tokens": SUMMARY_MAX_TOKENS}
    completion = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    text = completion.choices[0].message.content if completion.choices else ""
    return (text or "").strip(), completion.usage


def apply_summary(claimed: Any, text: str, usage: Any, error: str = "") -> bool:
    """Store the new summary on the room (unless it was cleared past it meanwhile) and end
    the run. Returns whether the summary changed."""
    from assistant.runs import _count_finished, _ours

    prompt_tokens = getattr(usage, "prompt_tokens", None) or claimed.prompt_tokens_estimate
    completion_tokens = getattr(usage, "completion_tokens", None) or 0
    status = AssistantRun.Status.DONE if text and not error else AssistantRun.Status.FAILED
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=claimed.room_id)
        run = _ours(claimed).select_related("trigger").first()
        if run is None:
            return False
        AssistantRun.objects.filter(pk=run.pk).update(
            status=status,
            error_code=(error or ("" if text else "empty"))[:30],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finished_at=timezone.now(),
            worker="",
        )
        _count_finished(AssistantRun.Kind.SUMMARY, status, prompt_tokens, completion_tokens)
        budget.record(
            run, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, estimated=usage is None
        )
        assistant = _settings(room)
        if status != AssistantRun.Status.DONE or run.trigger is None:
            return False
        if run.trigger.seq <= assistant.summary_through_seq:
            return False  # cleared or overtaken meanwhile
        assistant.summary = text[:SUMMARY_MAX_CHARS]
        assistant.summary_through_seq = run.trigger.seq
        assistant.summary_updated_at = timezone.now()
        assistant.save()
    return True


def forget_removed_message(message: Message) -> None:
    """A message was deleted or removed (the rooms hook, inside its transaction): if the
    summary covers it, the summary goes, and the messages it covered are read raw again
    (and summarised anew, without it). A summary being made may have read it: dropped too."""
    summaries = AssistantRun.objects.filter(
        room_id=message.room_id,
        kind=AssistantRun.Kind.SUMMARY,
        status__in=(AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING),
    )
    summaries.update(status=AssistantRun.Status.CANCELLED, finished_at=timezone.now(), worker="")
    AssistantSettings.objects.filter(room_id=message.room_id, summary_through_seq__gte=message.seq).update(
        summary="", summary_through_seq=0, summary_updated_at=None
    )


def do_clear_summary(user: User, room: Room) -> AssistantSettings:
    """Any member: the assistant forgets its summary of the room (and the messages it
    covered are not sent raw either); the room is told who cleared it."""
    from assistant.services import do_post_system_message

    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room.pk)
        assistant = _settings(room)
        had = bool(assistant.summary)
        assistant.summary, assistant.summary_updated_at = "", None
        assistant.save()
        # Queued or being made: a summary in the making folds in the one cleared now, and
        # stored afterwards it would bring it back (`apply_summary` stores only its own
        # running run's).
        AssistantRun.objects.filter(
            room=room,
            kind=AssistantRun.Kind.SUMMARY,
            status__in=(AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING),
        ).update(status=AssistantRun.Status.CANCELLED, finished_at=timezone.now(), worker="")
        if had:
            do_post_system_message(room.pk, "assistant_summary_cleared", actor=user)
    return assistant

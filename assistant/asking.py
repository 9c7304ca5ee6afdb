"""Asking the assistant privately inside a shared room: catch me up, ask privately,
continue in My assistant.

A private answer is a `PrivateAnswer` row (its own table: nothing that reads the room's
messages can return it) made by a run of a private kind (`PRIVATE_KINDS`). The runner
streams it like a reply, but its text goes only to the asker's channel-layer group
(`rooms.live_groups.user_group`), and only pages showing that room put it on screen.

The prompts here read the room's messages as the asker can see them (people they blocked
left out) and never the memories table: memories belong to the private room alone.
"""

from __future__ import annotations

import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import blocked_ids
from assistant import budget, dispatch
from assistant.models import AssistantRun, AssistantSettings, PrivateAnswer
from assistant.private import _quoted, do_open_private_room
from assistant.prompt import estimate_tokens
from assistant.services import (
    DAILY_LIMIT,
    ENCRYPTED_NO_ASSISTANT,
    NOT_CONFIGURED_TEXT,
    daily_limit_text,
    is_configured,
    runs_today,
)
from rooms.compiled import CompiledModels, compiled
from rooms.live_groups import user_group
from rooms.markdown import render_message
from rooms.models import Membership, Message, Room
from rooms.services import PostResult, do_post_message

# How many earlier messages go with one continued in My assistant.
CONTINUE_BEFORE = 4
# At most this many messages are read for a catch-up (the newest of them if more).
CATCH_UP_SCAN = 2000
CITATION = re.compile(r"\[#(\d+)\](?!\()")


def catch_up_offered(membership: Membership, unread_after: int | None) -> int:
    """How many messages a catch-up would summarize (0: the button is not offered)."""
    room = membership.room
    if room.is_private or room.encrypted or unread_after is None:
        return 0
    unread = room.last_seq - unread_after
    return unread if unread >= settings.CATCH_UP_MIN_UNREAD else 0


def _check_can_ask(room: Room, user: User) -> None:
    if room.encrypted:
        raise ValidationError(ENCRYPTED_NO_ASSISTANT, code="encrypted")
    if room.is_private:
        raise ValidationError(
            _("Ask in the conversation itself: this one is already private."), code="private"
        )
    if not is_configured():
        raise ValidationError(NOT_CONFIGURED_TEXT, code="not_configured")
    if runs_today(user) >= settings.ASSISTANT_DAILY_RUNS:
        raise ValidationError(daily_limit_text(), code=DAILY_LIMIT)
    refused = budget.refusal(room)
    if refused:
        raise ValidationError(refused, code=budget.BUDGET_USED_UP)


def _start(membership: Membership, kind: str, *, question: str = "", since_seq: int = 0) -> PrivateAnswer:
    room, user = membership.room, membership.user
    _check_can_ask(room, user)
    with transaction.atomic():
        run = AssistantRun.objects.create(room=room, kind=kind, requested_by=user)
        answer = PrivateAnswer.objects.create(
            room=room, user=user, kind=kind, run=run, question=question, since_seq=since_seq
        )
        transaction.on_commit(lambda: dispatch.run_queued(run.pk))
    return answer


def do_catch_up(membership: Membership, since_seq: int) -> PrivateAnswer:
    """Summarize for the member what happened after `since_seq` (their read position when
    they opened the room), visible to them alone."""
    since_seq = max(0, min(since_seq, membership.room.last_seq))
    return _start(membership, AssistantRun.Kind.CATCH_UP, since_seq=since_seq)


def clean_question(text: str) -> str:
    text = (text or "").replace("\r\n", "\n").strip()
    if not text:
        raise ValidationError(_("Type a question first."), code="empty")
    if len(text) > settings.MESSAGE_MAX_LENGTH:
        raise ValidationError(
            _("A question is at most %(limit)s characters.") % {"limit": settings.MESSAGE_MAX_LENGTH},
            code="too_long",
        )
    return text


def do_ask_privately(membership: Membership, question: str) -> PrivateAnswer:
    return _start(membership, AssistantRun.Kind.PRIVATE, question=clean_question(question))


def own_answer(user: User, room_id: int, answer_id: Any) -> PrivateAnswer | None:
    """The user's own private answer in the room, or None: the one way to reach one."""
    try:
        answer_id = int(answer_id)
    except (TypeError, ValueError):
        return None
    return PrivateAnswer.objects.filter(pk=answer_id, room_id=room_id, user=user).first()


def answers_for(user: User, room: Room) -> list[PrivateAnswer]:
    """My private answers in the room, oldest first (every room page asks: a query compiled
    once, rooms/compiled.py)."""
    query = compiled(
        "answers_for",
        lambda: CompiledModels(
            PrivateAnswer.objects.filter(room_id=-7_000_002, user_id=-7_000_001).order_by("id"),
            room=-7_000_002,
            user=-7_000_001,
        ),
    )
    return query.run(room=room.pk, user=user.pk)


def do_discard(answer: PrivateAnswer) -> None:
    """Remove a private answer (asking to stop it if it is still being written)."""
    with transaction.atomic():
        run = answer.run
        if run is not None and run.status in (AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING):
            AssistantRun.objects.filter(pk=run.pk, status=AssistantRun.Status.QUEUED).update(
                status=AssistantRun.Status.CANCELLED
            )
            AssistantRun.objects.filter(pk=run.pk).update(cancel_requested=True)
            run_id = run.pk
            transaction.on_commit(lambda: dispatch.stop(run_id))
        answer.delete()


def do_share_private(membership: Membership, answer: PrivateAnswer) -> PostResult:
    """Post the question and the answer to the room as the asker's message quoting both
    (the share card of the private room's answers), then drop the private copy."""
    if answer.state != PrivateAnswer.State.DONE or not answer.body:
        raise ValidationError(_("Only finished answers can be shared."), code="unfinished")
    persona = AssistantSettings.objects.filter(room=answer.room).values_list("name", flat=True).first()
    parts = []
    if answer.kind == AssistantRun.Kind.CATCH_UP:
        parts.append(_quoted("**Question:** Catch me up"))
    elif answer.question:
        parts.append(_quoted(f"**Question:** {answer.question}"))
    parts.append(_quoted(f"**{persona or 'Assistant'} (AI):** {answer.body}"))
    body = "\n\n".join(parts)
    if len(body) > settings.MESSAGE_MAX_LENGTH:
        raise ValidationError(
            _("That answer is too long to share: messages are at most %(limit)s characters.")
            % {"limit": settings.MESSAGE_MAX_LENGTH},
            code="too_long",
        )
    with transaction.atomic():
        # Locked and deleted before posting: a second Share of the same answer (another
        # tab, a double click without JavaScript) finds it gone instead of posting it again.
        if not PrivateAnswer.objects.select_for_update().filter(pk=answer.pk).exists():
            raise ValidationError(_("That answer is no longer here."), code="gone")
        PrivateAnswer.objects.filter(pk=answer.pk).delete()
        result = do_post_message(membership, body)
    return result


def do_continue_privately(membership: Membership, message: Message) -> PostResult:
    """Open the member's private assistant with the message (and a few before it) as
    context, linked back. It goes only to their own private room."""
    room = membership.room
    hidden = blocked_ids(membership.user)
    before = (
        Message.objects.filter(room=room, seq__lt=message.seq, deleted_at__isnull=True)
        .exclude(kind__in=(Message.Kind.SYSTEM, Message.Kind.ENCRYPTED))
        .exclude(author_id__in=hidden)
        .select_related("author")
        .order_by("-seq")[:CONTINUE_BEFORE]
    )
    excerpt = [*reversed(list(before)), message]
    link = reverse("rooms:message", args=[room.pk, message.seq])
    title = room.title or _("a conversation")
    lines = [f"{m.sender_name}: {m.body or m.preview}" for m in excerpt]
    body = (
        _("Continuing from [%(title)s](%(link)s):") % {"title": title, "link": link}
        + "\n\n"
        + _quoted("\n".join(lines))
    )
    private_room = do_open_private_room(membership.user)
    mine = Membership.objects.select_related("room", "user").get(room=private_room, user=membership.user)
    return do_post_message(mine, body[: settings.MESSAGE_MAX_LENGTH])


# Prompts (never the memories table)


def _transcript(rows: list[tuple], budget_tokens: int) -> tuple[list[str], int]:
    """Lines "[#seq] Name: text", newest kept first within the budget, then in order;
    and how many older ones did not fit."""
    lines: list[str] = []
    left = budget_tokens
    for seq, kind, state, body, file_name, display_name, username in rows:
        if kind == Message.Kind.ASSISTANT:
            if state != Message.State.DONE or not body:
                continue
            name = "Assistant"
        else:
            name = (display_name or username) if username else "Deleted account"
        if file_name:
            body = f"{body}\n[attached file: {file_name}]".strip()
        line = f"[#{seq}] {name}: {body}"
        cost = estimate_tokens(line)
        if cost > left and lines:
            break
        left -= cost
        lines.append(line)
    return list(reversed(lines)), len(rows) - len(lines)


def _rows(room: Room, user: User, *, after: int = 0, limit: int) -> list[tuple]:
    return list(
        Message.objects.filter(room=room, seq__gt=after, deleted_at__isnull=True)
        .exclude(kind__in=(Message.Kind.SYSTEM, Message.Kind.ENCRYPTED))
        .exclude(author_id__in=blocked_ids(user))
        .order_by("-seq")
        .values_list("seq", "kind", "state", "body", "file_name", "author__display_name", "author__username")[
            :limit
        ]
    )


def _asker_name(user: User) -> str:
    return user.display_name or user.username


def catch_up_prompt(answer: PrivateAnswer) -> list[dict[str, Any]]:
    room, user = answer.room, answer.user
    lines, left_out = _transcript(
        _rows(room, user, after=answer.since_seq, limit=CATCH_UP_SCAN), settings.ASSISTANT_CONTEXT_TOKENS
    )
    system = (
        f"You help {_asker_name(user)} catch up on the group conversation “{room.title}”. "
        "Only they will read your answer. Summarize briefly what happened in the messages "
        "below, which they have not read: decisions, questions addressed to them, open items. "
        "Use short bullet points, and end each point with the number of the message it comes "
        "from, written exactly like [#123]. Do not invent anything that is not in the messages."
    )
    header = f"{left_out} earlier unread messages are not shown.\n\n" if left_out else ""
    content = header + ("\n".join(lines) if lines else "(No messages.)")
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def private_prompt(answer: PrivateAnswer) -> list[dict[str, Any]]:
    room, user = answer.room, answer.user
    question = answer.question
    summary = AssistantSettings.objects.filter(room=room).values_list("summary", flat=True).first() or ""
    budget_tokens = settings.ASSISTANT_CONTEXT_TOKENS - estimate_tokens(question) - estimate_tokens(summary)
    lines, _left_out = _transcript(_rows(room, user, limit=200), max(budget_tokens, 200))
    system = (
        f"You are the assistant of the group conversation “{room.title}”. {_asker_name(user)} asks "
        "you something privately: only they will read your answer. Ground it in the recent "
        "messages below; when you refer to one, write its number exactly like [#123]. If the "
        "messages do not say, answer that they do not."
    )
    transcript = "Recent messages:\n" + ("\n".join(lines) if lines else "(No messages.)")
    prompt = [{"role": "system", "content": system}]
    # The room's rolling summary (assistant/summary.py), as replies see it: older history
    # in a few lines. The same for every member; made from the room's messages only.
    if summary:
        prompt.append(
            {"role": "system", "content": f"Summary of this room's earlier conversation:\n{summary}"}
        )
    prompt.append({"role": "user", "content": f"{transcript}\n\nMy question: {question}"})
    return prompt


def prompt_for(run: AssistantRun) -> list[dict[str, Any]]:
    answer = PrivateAnswer.objects.select_related("room", "user").get(run=run)
    if run.kind == AssistantRun.Kind.CATCH_UP:
        return catch_up_prompt(answer)
    return private_prompt(answer)


# Showing an answer: only to its asker, only on pages of its room


def linked(text: str, room_id: int) -> str:
    """`[#123]` citations as jump links to the messages they name."""
    return CITATION.sub(
        lambda m: f"[#{m.group(1)}]({reverse('rooms:message', args=[room_id, m.group(1)])})", text
    )


def render_answer_html(answer: PrivateAnswer) -> str:
    return render_to_string("assistant/_private_answer.html", {"answer": answer, "oob": True})


def answer_body_html(answer_id: int, room_id: int, text: str, *, streaming: bool) -> str:
    html = render_message(linked(text, room_id), {}, rich=True).html
    return render_to_string(
        "assistant/live/private_text.html", {"answer_id": answer_id, "html": html, "streaming": streaming}
    )


def _send(user_id: int, room_id: int, html: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        user_group(user_id), {"type": "user.fragment", "room_id": room_id, "html": html}
    )


def announce_answer(answer_id: int) -> None:
    """The whole answer card, to the asker's pages showing its room (after commit)."""
    answer = PrivateAnswer.objects.select_related("user").filter(pk=answer_id).first()
    if answer is None:
        return
    with translation.override(answer.user.language or settings.LANGUAGE_CODE):
        html = render_answer_html(answer)
    _send(answer.user_id, answer.room_id, html)


async def push_answer_text(user_id: int, room_id: int, answer_id: int, text: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    html = answer_body_html(answer_id, room_id, text, streaming=True)
    await layer.group_send(user_group(user_id), {"type": "user.fragment", "room_id": room_id, "html": html})

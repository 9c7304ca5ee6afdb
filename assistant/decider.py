"""Automatically: after a turn of conversation, the assistant decides whether to speak.

A person's message in a room set to Automatically queues a run of kind "decision"
(`services._queue_decision`), claimable only after a pause (ASSISTANT_DECIDE_PAUSE_SECONDS):
messages arriving meanwhile join it, so a burst is one turn. The runner claims it like any
run (same table, claim, heartbeat, recovery and slots), asks the model once, without
streaming, for a small JSON answer (`DECISION_SCHEMA`; servers without JSON schema get the
same request without it, and the prompt asks for JSON anyway), and `apply_decision` acts
on it in one transaction holding the room's lock:

- respond: a reply run, `unprompted`, carrying the reason ("Why?" under the reply), counted
  against the allowance of the person whose message it answers, and the emoji the model
  may give with it on that message;
- react: the assistant's emoji on that message (rooms.services.reactions);
  either reaction keeps the reason, shown on its chip;
- silent: nothing in the room.

The guards are checked there, with the room as it is then: never two unprompted replies
without a person's message between them (nor an unprompted one right after any reply of
its own, such as a mention answered while the turn waited for its pause), at most
ASSISTANT_AUTO_REPLIES_PER_HOUR a room, none while a reply is on its way, none during a
quiet hour. A held-back decision is stored as silent with the reason why. An answer that
cannot be read is silence, logged (without the conversation). Every decision keeps its
tokens, its choice and its reason on the run (the admin's run list).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from openai.types.chat import ChatCompletion

from assistant import budget, dispatch
from assistant.models import AssistantRun, ReplyMode
from assistant.prompt import redacted
from assistant.runs import Claimed, _count_finished, _ours
from assistant.services import is_quiet, runs_today, settings_for
from rooms.models import Message, Room
from rooms.services.reactions import do_add_assistant_reaction

log = logging.getLogger(__name__)

Action = AssistantRun.Decision

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": [choice.value for choice in Action]},
        "emoji": {"type": "string"},
        "reason": {"type": "string"},
    },
    "required": ["action", "emoji", "reason"],
    "additionalProperties": False,
}
# A decision is a line or two of JSON.
DECISION_MAX_TOKENS = 200


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    emoji: str = ""


def parse_decision(text: str) -> Decision | None:
    """The model's answer as a Decision, or None if it cannot be read as one. Accepts the
    JSON alone, in a code fence, or inside other words (plain-text servers)."""
    found = re.search(r"\{.*\}", text or "", re.DOTALL)
    if found is None:
        return None
    try:
        data = json.loads(found.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    action = str(data.get("action", "")).strip().lower()
    if action not in Action.values:
        return None
    reason = " ".join(str(data.get("reason") or "").split())[:300]
    emoji = str(data.get("emoji") or "").strip()
    if action == Action.REACT and not emoji:
        return None
    # A reply may come with an emoji on the message it answers; silence has none.
    return Decision(action=action, reason=reason, emoji=emoji if action != Action.SILENT else "")


async def ask_for_decision(
    client: openai.AsyncOpenAI, *, model: str, messages: list[dict[str, Any]]
) -> tuple[str, Any]:
    """One small, non-streamed call: (the model's text, its usage). Asks for JSON schema
    output; a server that refuses the parameter (400) is asked again without it."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": DECISION_MAX_TOKENS,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "decision", "strict": True, "schema": DECISION_SCHEMA},
        },
    }
    try:
        completion = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    except openai.BadRequestError:
        del body["response_format"]
        completion = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    text = completion.choices[0].message.content if completion.choices else ""
    return text or "", completion.usage


def held_back(room: Room, run: AssistantRun, action: str) -> str:
    """Why a decision to speak or react must not be carried out now ("" if it may)."""
    assistant = settings_for(room)
    if assistant.reply_mode != ReplyMode.AUTO or is_quiet(assistant):
        return "the room no longer lets it join in unprompted"
    trigger = run.trigger
    if trigger is None or trigger.is_deleted:
        return "the message was deleted"
    if action != Action.RESPOND:
        return ""
    replies = AssistantRun.objects.filter(room=room, kind=AssistantRun.Kind.REPLY)
    if replies.filter(status__in=(AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING)).exists():
        return "a reply is already on its way"
    people = Message.objects.filter(room=room, kind=Message.Kind.TEXT, deleted_at__isnull=True)
    # An unprompted reply that never got a message (failed before it was shown) said
    # nothing: it holds nothing back.
    last = (
        replies.filter(unprompted=True, reply__isnull=False).select_related("reply").order_by("-id").first()
    )
    if last is not None and last.reply is not None and not people.filter(seq__gt=last.reply.seq).exists():
        return "nobody has written since its last unprompted reply"
    # Nor right after any reply of its own (a mention answered while this turn waited for
    # its pause): two assistant messages in a row without a person between them.
    spoke = (
        Message.objects.filter(
            room=room, kind=Message.Kind.ASSISTANT, deleted_at__isnull=True, state=Message.State.DONE
        )
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    if spoke is not None and not people.filter(seq__gt=spoke).exists():
        return "nobody has written since it last spoke"
    hour_ago = timezone.now() - dt.timedelta(hours=1)
    if (
        replies.filter(unprompted=True, created_at__gte=hour_ago).count()
        >= settings.ASSISTANT_AUTO_REPLIES_PER_HOUR
    ):
        return "the room had its unprompted replies for this hour"
    if trigger.author is not None and runs_today(trigger.author) >= settings.ASSISTANT_DAILY_RUNS:
        return "the daily allowance is used up"
    return ""


def apply_decision(claimed: Claimed, decision: Decision | None, usage: Any, error: str = "") -> str:
    """Store the decision on its run and carry it out. Returns what was done (an Action
    value), or "" if the run is no longer this runner's."""
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    if prompt_tokens is None:
        prompt_tokens = claimed.prompt_tokens_estimate
    completion_tokens = getattr(usage, "completion_tokens", None) or 0
    action = decision.action if decision is not None else Action.SILENT
    reason = decision.reason if decision is not None else ""
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=claimed.room_id)
        run = _ours(claimed).select_related("trigger__author").first()
        if run is None:
            return ""
        if action != Action.SILENT:
            why_not = held_back(room, run, action)
            if why_not:
                reason = f"{reason} (held back: {why_not})".strip()
                action = Action.SILENT
        AssistantRun.objects.filter(pk=run.pk).update(
            status=AssistantRun.Status.DONE,
            decision=action,
            reason=reason[:300],
            error_code=error[:30],
            prompt=redacted(claimed.prompt),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finished_at=timezone.now(),
            first_token_at=timezone.now(),
            worker="",
        )
        _count_finished(
            AssistantRun.Kind.DECISION, AssistantRun.Status.DONE, prompt_tokens, completion_tokens
        )
        # Against the room's budget always (nobody's allowance: nobody asked), like every run.
        budget.record(
            run, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, estimated=usage is None
        )
        trigger = run.trigger
        if trigger is None:  # held back above: a deleted message has nothing to answer
            return action
        if action == Action.RESPOND:
            reply = AssistantRun.objects.create(
                room=room,
                kind=AssistantRun.Kind.REPLY,
                requested_by=trigger.author,
                trigger=trigger,
                unprompted=True,
                decision=action,
                reason=reason[:300],
            )
            transaction.on_commit(functools.partial(dispatch.run_queued, reply.pk))
            if decision is not None and decision.emoji:
                # The emoji the model chose to go with its reply: a bad one costs the
                # reply nothing.
                try:
                    with transaction.atomic():
                        do_add_assistant_reaction(
                            trigger, decision.emoji, persona=settings_for(room).name, reason=reason[:300]
                        )
                except ValidationError:
                    log.warning("Assistant decision %s chose an emoji it cannot give with its reply", run.pk)
        elif action == Action.REACT and decision is not None:
            try:
                with transaction.atomic():
                    do_add_assistant_reaction(
                        trigger, decision.emoji, persona=settings_for(room).name, reason=reason[:300]
                    )
            except ValidationError:
                log.warning("Assistant decision %s chose an emoji it cannot give", run.pk)
                AssistantRun.objects.filter(pk=run.pk).update(decision=Action.SILENT, error_code="bad_emoji")
                return Action.SILENT
    return action

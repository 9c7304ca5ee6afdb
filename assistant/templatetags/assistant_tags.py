from django import template
from django.utils.safestring import mark_safe

from assistant import asking, budget
from assistant.forms import AssistantForm
from assistant.models import ReplyMode
from assistant.services import can_change_assistant, can_control_search, is_configured, is_quiet, settings_for
from rooms.access import is_owner
from rooms.markdown import render_message

register = template.Library()


@register.inclusion_tag("assistant/_panel.html")
def assistant_panel(room, user, form=None):
    """The room's "Assistant" settings section."""
    assistant = settings_for(room)
    owner_controls = is_owner(user, room)
    if form is None:
        form = AssistantForm(
            initial={
                "name": assistant.name,
                "personality": assistant.personality,
                "reply_mode": assistant.reply_mode,
                "members_can_edit": assistant.members_can_edit,
                "web_search": assistant.web_search,
            },
            owner_controls=owner_controls,
            search_controls=can_control_search(user, room),
        )
    return {
        "room": room,
        "assistant": assistant,
        "form": form,
        "can_change": can_change_assistant(user, room, assistant),
        "configured": is_configured(),
        "automatic": assistant.reply_mode == ReplyMode.AUTO,
        "quiet": is_quiet(assistant),
    }


# What the assistant adds to a message in the room's list (rooms/_message.html), so that
# rooms names none of the assistant's URLs.


@register.inclusion_tag("assistant/_run_action.html")
def assistant_run_action(message):
    """Stop for a reply being written, Retry for one that failed; nothing otherwise."""
    return {"message": message}


@register.inclusion_tag("assistant/_message_actions.html")
def assistant_message_actions(message):
    """The assistant's entries in a message's actions: Share to… for a finished answer in
    the private room."""
    return {"message": message}


@register.inclusion_tag("assistant/_why.html")
def assistant_why(message):
    """Under a finished reply nobody asked for: "Why?" with the reason its decision gave,
    kept on the message (assistant.runs.finish), so rendering needs no query."""
    params = message.event_params or {}
    unprompted = message.is_assistant and message.state == message.State.DONE and params.get("unprompted")
    return {"message": message, "unprompted": bool(unprompted), "why": params.get("why", "")}


# Private answers inside a shared room, shown to their asker only (assistant/asking.py)


@register.inclusion_tag("assistant/_private_panel.html", takes_context=True)
def private_panel(context, room, user, page=None):
    """Catch me up, Ask privately, and the viewer's own private answers in this room."""
    membership = context.get("membership")
    unread_after = getattr(page, "unread_after", None)
    return {
        "room": room,
        "answers": asking.answers_for(user, room),
        "catch_up_count": asking.catch_up_offered(membership, unread_after) if membership else 0,
        "since": unread_after,
        "csrf_token": context.get("csrf_token"),
    }


@register.simple_tag
def private_answer_body(answer):
    return mark_safe(render_message(asking.linked(answer.body, answer.room_id), {}, rich=True).html)  # noqa: S308  # rendered markdown, escaped by the renderer


@register.inclusion_tag("assistant/_budget.html", takes_context=True)
def budget_meter(context, room, user):
    """The room's AI budget: this month's use, by kind and by member, and its setting."""
    from assistant.forms import BudgetForm

    current = budget.budget_for(room)
    return {
        "room": room,
        "meter": budget.meter(room),
        "can_set": budget.can_set_budget(user, room),
        "form": context.get("budget_form")
        or BudgetForm(initial={"unit": current.unit, "limit": current.limit}),
        "csrf_token": context.get("csrf_token"),
    }

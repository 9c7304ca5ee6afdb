from django import template

from assistant.forms import AssistantForm
from assistant.services import can_change_assistant, is_configured, settings_for
from rooms.access import is_owner

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
            },
            owner_controls=owner_controls,
        )
    return {
        "room": room,
        "assistant": assistant,
        "form": form,
        "can_change": can_change_assistant(user, room, assistant),
        "configured": is_configured(),
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

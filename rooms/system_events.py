"""What a system message says ("Alice added Bob and Carol"), in the reader's language.

A system message stores what happened, as an event code and its parameters (names, a
title), on `Message.event` and `Message.event_params`; its text is made when it is shown,
in the active language (`Message.system_text`). `Message.body` keeps the English text too:
for search, exports, the assistant's prompt, and the rows written before events existed.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.dates import MONTHS
from django.utils.translation import gettext, gettext_noop

from calpico.languages import format_names

EVENTS: dict[str, str] = {
    "group_created": gettext_noop("%(actor)s created the group “%(title)s”"),
    "members_added": gettext_noop("%(actor)s added %(users)s"),
    "group_renamed": gettext_noop("%(actor)s renamed the group to “%(title)s”"),
    "member_removed": gettext_noop("%(actor)s removed %(user)s"),
    "member_left": gettext_noop("%(user)s left"),
    "owner_succeeded": gettext_noop("%(user)s is now the owner"),
    "owner_made": gettext_noop("%(actor)s made %(user)s the owner"),
    "removed_by_moderator": gettext_noop("%(user)s was removed by a moderator"),
    "admin_made": gettext_noop("%(actor)s made %(user)s an admin"),
    "admin_removed": gettext_noop("%(actor)s removed %(user)s as admin"),
    "invites_everyone": gettext_noop("%(actor)s let every member invite people"),
    "invites_admins": gettext_noop("%(actor)s made invite links owner and admins only"),
    "joined_by_link": gettext_noop("%(user)s joined with an invite link"),
    "assistant_renamed": gettext_noop("%(actor)s renamed the assistant to %(name)s"),
    "assistant_personality_changed": gettext_noop("%(actor)s changed the assistant’s personality"),
    "assistant_personality_cleared": gettext_noop("%(actor)s cleared the assistant’s personality"),
    "assistant_replies_auto": gettext_noop(
        "%(actor)s set the assistant to join in when it has something useful to add"
    ),
    "assistant_quiet_hour": gettext_noop(
        "%(actor)s asked the assistant to stay quiet for an hour; it still answers mentions"
    ),
    "assistant_summary_cleared": gettext_noop(
        "%(actor)s cleared what the assistant remembers about this room"
    ),
    "assistant_search_on": gettext_noop("%(actor)s let the assistant search the web"),
    "assistant_search_off": gettext_noop("%(actor)s turned off the assistant’s web search"),
    "assistant_replies_always": gettext_noop("%(actor)s set the assistant to reply to every message"),
    "assistant_replies_mention": gettext_noop("%(actor)s set the assistant to reply only when mentioned"),
    "assistant_replies_off": gettext_noop("%(actor)s set the assistant to stay quiet"),
    "assistant_members_edit": gettext_noop("%(actor)s let every member change the assistant"),
    "assistant_admins_edit": gettext_noop("%(actor)s let only the owner and admins change the assistant"),
    "memory_saved": gettext_noop("Memory saved: %(text)s"),
    "memory_not_saved": gettext_noop("Not saved as a memory: %(reason)s"),
    "ai_budget_80": gettext_noop("This room has used 80%% of its AI budget for %(month)s."),
    "ai_budget_used_up": gettext_noop("This room’s AI budget for %(month)s is used up."),
    # An end-to-end encrypted room (docs/e2ee.md): someone's keys changed.
    "e2ee_device_added": gettext_noop("%(user)s added a new device"),
    "e2ee_device_removed": gettext_noop("%(user)s removed a device"),
}


def join_names(names: Sequence[str]) -> str:
    """ "Bob", "Bob and Carol", "Bob, Carol and Dave", in the active language."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return gettext("%(names)s and %(last)s") % {"names": ", ".join(names[:-1]), "last": names[-1]}


def render(event: str, params: Mapping[str, Any]) -> str:
    """The event's text in the active language; a list among the params is a list of names."""
    values = {key: join_names(value) if isinstance(value, list) else value for key, value in params.items()}
    month = values.get("month")
    if isinstance(month, int):  # a month's number, named in the reader's language
        values["month"] = str(MONTHS.get(month, month))
    # French elides "de" before a name or month starting with a vowel ("d’Alice", "d’avril").
    return format_names(gettext(EVENTS[event]), **values)


def render_default(event: str, params: Mapping[str, Any]) -> str:
    """The event's text in the site's default language, as stored in Message.body."""
    with translation.override(settings.LANGUAGE_CODE):
        return render(event, params)

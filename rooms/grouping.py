"""How a room's history is laid out: consecutive messages from one person, a few minutes
apart, share one header (avatar, name, time), and a "New messages" line marks where the
reader had read up to when they opened the room.

Pages are laid out as they are read (`lay_out`, from `rooms.queries.history_page`) and drawn
by `laid_out_html`: a message's HTML is shared by every page that shows it (rooms/fragments.py),
so where it sits is marked on that HTML, as `is-mine` is. static/js/grouping.js applies the
same rule on the page, in the viewer's own time zone, wherever the server could not:
messages pushed live, the seam where a page of older history meets the page below it, and a
message replaced by an edit. The line is never moved once the page shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from rooms.models import Message

if TYPE_CHECKING:
    from rooms.queries import HistoryPage

_ARTICLE = '<article class="message'
_CONTINUED = '<article class="message message--continued'


def continues(previous: Message | None, message: Message) -> bool:
    """Whether `message` is drawn under `previous`'s header: both written by the same person
    (the assistant's and system messages stand alone), at most MESSAGE_GROUP_SECONDS apart,
    on the same day."""
    if previous is None or previous.kind != Message.Kind.TEXT or message.kind != Message.Kind.TEXT:
        return False
    if message.author_id is None or message.author_id != previous.author_id:
        return False
    gap = (message.created_at - previous.created_at).total_seconds()
    if not 0 <= gap <= settings.MESSAGE_GROUP_SECONDS:
        return False
    return timezone.localdate(previous.created_at) == timezone.localdate(message.created_at)


def lay_out(messages: Sequence[Message], *, unread_after: int | None = None) -> int | None:
    """Mark each of `messages` (consecutive, oldest first) with `continues_group` for the
    template, and return the seq of the message the "New messages" line goes above, if it
    is one of these: the first after `unread_after`, the reader's read position when they
    opened the room. The line starts a new group."""
    first_unread = unread_after + 1 if unread_after is not None else None
    line_at = None
    previous = None
    for message in messages:
        if message.seq == first_unread:
            line_at = first_unread
            previous = None
        message.continues_group = continues(previous, message)  # type: ignore[attr-defined]
        previous = message
    return line_at


def laid_out_html(page: HistoryPage, html: Sequence[SafeString]) -> list[SafeString]:
    """The page's messages' HTML (`html`, one per message, as rooms.fragments draws them) as
    the page shows them: a message that continues a group marked `message--continued`, and
    the "New messages" line above the first unread one."""
    out: list[SafeString] = []
    for message, fragment in zip(page.messages, html, strict=True):
        if message.seq == page.unread_seq:
            out.append(mark_safe(render_to_string("rooms/_unread_line.html")))  # noqa: S308 (our template)
        if getattr(message, "continues_group", False):
            fragment = mark_safe(fragment.replace(_ARTICLE, _CONTINUED, 1))  # noqa: S308 (rendered HTML, a class added)
        out.append(fragment)
    return out

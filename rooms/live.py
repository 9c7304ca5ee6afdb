"""Telling connected browsers what changed, through the channel layer.

The `announce_*` functions are called by the services after their transaction commits
(`transaction.on_commit`); the receivers at the end listen to account changes, which
`accounts` cannot tell `rooms` directly. Each renders what is the same for every viewer
exactly once and sends one event to a group. The consumer (`rooms/consumers.py`) decides
per viewer what to forward, from memory.
"""

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from allauth.account.signals import password_changed, password_reset, password_set
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import User
from accounts.signals import blocks_changed, password_set_by_admin
from calpico import languages, metrics
from rooms import fragments
from rooms.live_groups import room_group, user_group
from rooms.markdown import render_message
from rooms.models import Membership, Message, Room
from rooms.presence import online_user_ids
from rooms.queries import room_members

log = logging.getLogger(__name__)


def send_event(group: str, event: dict[str, Any]) -> None:
    """Send from synchronous code (views, services' on_commit callbacks)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        # The database already holds the change; clients catch up on reconnect.
        log.exception("Could not send %s to %s", event.get("type"), group)


def localized(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The event `build` makes, rendered once per language someone uses rather than in the
    language of whoever caused it: the default language's as it is, and under "i18n" what
    each other language in use (calpico.languages.others_in_use) renders differently. Each
    consumer lays its viewer's language over the event (rooms.consumers.RoomConsumer.dispatch).
    A language nobody has used for a week is not rendered: a post costs half as much."""
    with translation.override(settings.LANGUAGE_CODE):
        event = build()
    others = {}
    for code in languages.others_in_use():
        with translation.override(code):
            other = build()
        changed = {key: value for key, value in other.items() if value != event.get(key)}
        if changed:
            others[code] = changed
    if others:
        event["i18n"] = others
    return event


def message_event(message: Message) -> dict[str, Any]:
    """The event for a new message: every fragment rendered once per language, for any viewer."""
    return localized(lambda: _message_event(message))


def _message_event(message: Message) -> dict[str, Any]:
    room = message.room
    author = message.author
    preview = message.preview
    context = {
        "message": message,
        "room": room,
        "preview": preview,
        "message_html": fragments.message_html(message),
    }
    mentioned = bool(message.mentioned_user_ids)
    return {
        "type": "room.message",
        "room_id": room.pk,
        "seq": message.seq,
        "message_id": message.pk,
        "author_id": message.author_id,
        "system": message.is_system,
        "mentions": message.mentioned_user_ids,
        "message_html": render_to_string("rooms/live/message.html", context),
        "sidebar_html": render_to_string("rooms/live/sidebar_preview.html", {**context, "mine": False}),
        "sidebar_html_mine": (
            render_to_string("rooms/live/sidebar_preview.html", {**context, "mine": True}) if author else ""
        ),
        "toast_html": (
            render_to_string("rooms/live/toast.html", {**context, "mention": False}) if author else ""
        ),
        "toast_html_mention": (
            render_to_string("rooms/live/toast.html", {**context, "mention": True}) if mentioned else ""
        ),
    }


async def push_partial_text(room_id: int, message_id: int, body: str) -> None:
    """Show the text an assistant message has so far to everyone looking at the room.

    Only the message's body travels, as markdown rendered once; the final text arrives
    as an ordinary message_changed event.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    rendered = render_message(body, {}, rich=True)
    html = render_to_string("rooms/live/partial_text.html", {"message_id": message_id, "html": rendered.html})
    try:
        await layer.group_send(
            room_group(room_id), {"type": "room.fragment", "room_id": room_id, "html": html}
        )
    except Exception:
        log.exception("Could not push partial text to room %s", room_id)


def send_room_fragment(room_id: int, html: str | Callable[[], str]) -> None:
    """Swap `html` (out-of-band fragments) into every page showing the room, from sync code;
    a function making the HTML is called in each language."""
    render = html if callable(html) else (lambda: html)
    send_event(
        room_group(room_id),
        localized(lambda: {"type": "room.fragment", "room_id": room_id, "html": render()}),
    )


def announce_message(message: Message) -> None:
    """A new message, to everyone in its room. `announced_at` (this host's clock) lets each
    consumer measure the fan-out (calpico_fanout_seconds)."""
    announced_at = time.time()
    metrics.MESSAGES_POSTED.labels(kind=message.kind).inc()
    send_event(room_group(message.room_id), {**message_event(message), "announced_at": announced_at})


def announce_message_changed(message: Message) -> None:
    """A message edited, deleted, or an assistant reply moving on, to everyone in its room."""
    send_event(room_group(message.room_id), localized(lambda: _message_changed_event(message)))


def _message_changed_event(message: Message) -> dict[str, Any]:
    html = render_to_string("rooms/_message.html", {"message": message, "oob": True})
    event = {
        "type": "room.message_changed",
        "room_id": message.room_id,
        "message_id": message.pk,
        "author_id": message.author_id,
        "html": html,
        "sidebar_html": "",
        "sidebar_html_mine": "",
    }
    room = message.room
    if room.last_message_id == message.pk:
        # The sidebar shows this message's preview: an edit, a delete or a finished reply
        # changes it for every member, wherever they are.
        context = {"message": message, "room": room, "preview": message.preview}
        event["sidebar_html"] = render_to_string(
            "rooms/live/sidebar_preview.html", {**context, "mine": False}
        )
        if message.author_id:
            event["sidebar_html_mine"] = render_to_string(
                "rooms/live/sidebar_preview.html", {**context, "mine": True}
            )
    return event


def reactions_event(message: Message, *, actor: User | None, emoji: str, added: bool) -> dict[str, Any]:
    """The event for a change of a message's reactions: its chips as they now are (set on
    the message by the service), and a quiet toast for its author when someone reacted to
    it in a direct room (the consumer sends that to the author alone)."""
    return localized(lambda: _reactions_event(message, actor=actor, emoji=emoji, added=added))


def _reactions_event(message: Message, *, actor: User | None, emoji: str, added: bool) -> dict[str, Any]:
    html = render_to_string("rooms/_reactions.html", {"message": message, "reactions_oob": True})
    toast_html = ""
    room = message.room
    if added and actor is not None and room.is_direct and message.author_id not in (None, actor.pk):
        context = {"message": message, "room": room, "actor": actor, "emoji": emoji}
        toast_html = render_to_string("rooms/live/reaction_toast.html", context)
    return {
        "type": "room.reactions",
        "room_id": room.pk,
        "message_id": message.pk,
        "author_id": message.author_id,
        "actor_id": actor.pk if actor is not None else None,
        "html": html,
        "toast_html": toast_html,
    }


def announce_reactions(message: Message, *, actor: User | None, emoji: str, added: bool) -> None:
    """Someone (`actor`; None: the assistant) added or took back an emoji on a message: its
    chips, to everyone in the room."""
    send_event(room_group(message.room_id), reactions_event(message, actor=actor, emoji=emoji, added=added))


def announce_members_changed(room: Room, *, added: Sequence[User] = (), removed: Sequence[User] = ()) -> None:
    """People joined or left: their sidebars, and the room's member list on open pages."""
    if added and room.is_group:
        event = localized(
            lambda: {
                "type": "membership.added",
                "room_id": room.pk,
                "entry_html": render_to_string(
                    "rooms/live/sidebar_entry.html", {"room": room, "title": room.title}
                ),
                "toast_html": render_to_string("rooms/live/added_toast.html", {"room": room}),
            }
        )
        for user in added:
            send_event(user_group(user.pk), event)
    elif added:
        # A direct room: each person's entry shows the other one; no "added" toast (the
        # first message notifies as any message does).
        people = {m.user_id: m.user for m in room.memberships.select_related("user")}
        for user in added:
            other = next((p for uid, p in people.items() if uid != user.pk), None)
            entry_context: dict[str, Any] = {
                "room": room,
                "title": other.name if other else None,
                "other": other,
            }

            def entry(context: dict[str, Any] = entry_context) -> dict[str, Any]:
                html = render_to_string(
                    "rooms/live/sidebar_entry.html",
                    {**context, "title": context["title"] or translation.gettext("Direct message")},
                )
                return {"type": "membership.added", "room_id": room.pk, "entry_html": html, "toast_html": ""}

            send_event(user_group(user.pk), localized(entry))
    for user in removed:
        send_event(user_group(user.pk), {"type": "membership.removed", "room_id": room.pk})
    if room.is_group and (added or removed):
        # Pages showing the group: its member count, faces and @ suggestions.
        members = room_members(room)
        members_context: dict[str, Any] = {
            "room": room,
            "members": members,
            "online": online_user_ids(m.pk for m in members),
        }
        send_room_fragment(room.pk, lambda: render_to_string("rooms/live/members.html", members_context))


def announce_membership_updated(membership: Membership) -> None:
    """A member's own settings for the room (mute), to their other pages."""
    send_event(
        user_group(membership.user_id),
        {"type": "membership.updated", "room_id": membership.room_id, "muted": membership.muted},
    )


def announce_read_position(room_id: int, user_id: int, seq: int) -> None:
    """A member read up to `seq`, past a message someone else wrote: to the room, whose
    consumers pass it on to the pages showing it that may see it (they draw "Seen" from it).
    Only called for members who share read receipts (rooms.services.messages)."""
    send_event(room_group(room_id), {"type": "room.read", "room_id": room_id, "user_id": user_id, "seq": seq})


def announce_read_receipts(user_id: int, enabled: bool, positions: dict[int, int]) -> None:
    """Someone switched read receipts on or off: their own sockets (which stop or start
    passing others' positions on), and each of their rooms (`positions`: room id to their
    read position), whose pages forget their position or are given it again."""
    send_event(user_group(user_id), {"type": "user.receipts", "enabled": enabled})
    for room_id, seq in positions.items():
        send_event(
            room_group(room_id),
            {"type": "room.read", "room_id": room_id, "user_id": user_id, "seq": seq if enabled else None},
        )


def close_user_sockets(user_id: int, *, reason: str, reconnect: bool = False) -> None:
    """Close every open socket of this user, in every process.

    With `reconnect`, pages are told to reconnect at once (4012) rather than that they are
    signed out (4401): each comes back with the session cookie its browser holds now, and
    only a session that is still valid gets in. A session cannot be told apart from a copy
    of its cookie, so this is how the browser that stays signed in keeps its pages.
    """
    send_event(user_group(user_id), {"type": "session.ended", "reason": reason, "reconnect": reconnect})


@receiver(blocks_changed)
def announce_blocks_changed(
    sender: object, blocker: User, blocked: User | None = None, **kwargs: object
) -> None:
    # The blocker's open pages start (or stop) collapsing and muting that person.
    send_event(user_group(blocker.pk), {"type": "user.blocks"})
    if blocked is not None:
        # The blocked person's sockets stop passing on the blocker's read position. Nothing
        # reaches their page: they are never told.
        send_event(user_group(blocked.pk), {"type": "user.blocked_by"})


@receiver(user_logged_out)
def close_sockets_on_logout(
    sender: object, request: HttpRequest, user: User | None, **kwargs: object
) -> None:
    # The other devices of the account are still signed in: their pages come back at once.
    if user is not None:
        close_user_sockets(user.pk, reason="logged_out", reconnect=True)


@receiver(password_changed)
@receiver(password_set)
def close_sockets_on_password_change(
    sender: object, request: HttpRequest, user: User, **kwargs: object
) -> None:
    # Django has ended the other sessions (their stored password hash no longer matches) and
    # renewed this one's key: the old cookie, and every copy of it, signs no one in.
    transaction.on_commit(lambda: close_user_sockets(user.pk, reason="password_changed", reconnect=True))


@receiver(password_set_by_admin)
def close_sockets_on_password_set_by_admin(sender: object, user: User, **kwargs: object) -> None:
    # As after the person's own change: only a session still valid (the staff member's own,
    # if it is their account) comes back.
    transaction.on_commit(lambda: close_user_sockets(user.pk, reason="password_changed", reconnect=True))


@receiver(password_reset)
def close_sockets_on_password_reset(
    sender: object, request: HttpRequest, user: User, **kwargs: object
) -> None:
    # Whoever reset it proved only the e-mail address: no session of the account is kept.
    transaction.on_commit(lambda: close_user_sockets(user.pk, reason="password_reset", reconnect=False))


@receiver(post_save, sender=User)
def close_sockets_of_deactivated_users(
    sender: object, instance: User, update_fields: frozenset[str] | None = None, **kwargs: object
) -> None:
    if not instance.is_active and (update_fields is None or "is_active" in update_fields):
        user_id = instance.pk
        transaction.on_commit(lambda: close_user_sockets(user_id, reason="deactivated", reconnect=False))

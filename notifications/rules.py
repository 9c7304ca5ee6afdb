"""Who is notified of what when Calpico is closed (docs/notifications.md has the table).

Pushed: direct messages, mentions (even in a muted room), messages in groups that are not
muted, being added to a group, people joining or leaving a group I own or am an admin of,
message requests (as "New message request", without the text) and moderators' notices.
Never: my own actions, a muted room (but for a mention), anything from someone I blocked, a
message I have already read, or a room a page of mine has in front of me right now
(rooms.presence.viewing: that page showed it). An assistant's reply is not pushed. An
encrypted conversation's pushes never carry text ("New message from Alice").

Every notification of a room carries the room's `tag`, so a device shows one per room,
the newest replacing the older, counting what is unread ("3 new messages").
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext, ngettext

from accounts.models import Block, User
from calpico.languages import format_names
from notifications.models import PushSubscription
from rooms import presence
from rooms.models import Membership, Message, Notice, Room

# System messages about people joining or leaving a group, for its owner and admins.
MEMBERSHIP_EVENTS = frozenset(
    {"members_added", "member_removed", "member_left", "joined_by_link", "removed_by_moderator"}
)


@dataclass(frozen=True)
class Notification:
    """One system notification for one person, as their devices show it."""

    user_id: int
    reason: str  # direct, mention, group, request, members, added, notice
    tag: str
    title: str
    body: str
    url: str
    # What the push job checks again as it sends (a retry can come long after): not sent.
    message_id: int | None = None
    actor_id: int | None = None
    room_id: int | None = None
    unread: int = 0

    def recheck(self) -> dict[str, Any]:
        """What `again` needs to decide this notification anew when it is sent."""
        return {
            "user_id": self.user_id,
            "reason": self.reason,
            "message_id": self.message_id,
            "actor_id": self.actor_id,
            "room_id": self.room_id,
            "unread": self.unread,
        }

    def payload(self) -> dict[str, Any]:
        return {
            # Whom it is for: the service worker drops it if someone else signed in on the
            # browser since (templates/notifications/sw.js). Only that browser can read it.
            "to": self.user_id,
            "title": self.title,
            "body": self.body,
            "tag": self.tag,
            "url": self.url,
            "reason": self.reason,
        }


def room_tag(room_id: int) -> str:
    # The same tag as the open tab's desktop notifications (static/js/notifications.js):
    # one replaces the other.
    return f"calpico-room-{room_id}"


def _language(user: User) -> str:
    return user.language or settings.LANGUAGE_CODE


def _blockers(user_ids: set[int], of: set[int]) -> set[int]:
    """Who of `user_ids` blocked anyone in `of`."""
    if not user_ids or not of:
        return set()
    return set(
        Block.objects.filter(blocker_id__in=user_ids, blocked_id__in=of).values_list("blocker_id", flat=True)
    )


# Counting what is unread stops here ("99 new messages" at most).
COUNT_AT_MOST = 99


def _unread_seqs(message: Message, memberships: list[Membership]) -> list[int]:
    """The seqs of people's messages (not system ones) up to `message` that the furthest
    behind of these readers has not read, in order: one query for every reader."""
    if not memberships:
        return []
    behind = min(m.last_read_seq for m in memberships)
    seqs = (
        Message.objects.filter(
            room_id=message.room_id, seq__gt=behind, seq__lte=message.seq, deleted_at__isnull=True
        )
        .exclude(kind=Message.Kind.SYSTEM)
        .order_by("-seq")
        .values_list("seq", flat=True)[:COUNT_AT_MOST]
    )
    return sorted(seqs)


def _reason(message: Message, room: Room, membership: Membership) -> str | None:
    user_id = membership.user_id
    if message.is_system:
        if (
            message.event in MEMBERSHIP_EVENTS
            and room.is_group
            and not membership.muted
            and (room.owner_id == user_id or membership.role == Membership.Role.ADMIN)
        ):
            return "members"
        return None
    if message.is_assistant:
        return None
    if membership.request == Membership.Request.PENDING:
        return "request"
    if user_id in message.mentioned_user_ids:
        return "mention"
    if membership.muted:
        return None
    if room.is_direct:
        return "direct"
    if room.is_group:
        return "group"
    return None


def for_message(
    message: Message, actor_id: int | None, *, reachable_only: bool = False
) -> list[Notification]:
    """The notifications a new message (a person's or a system message) raises, one per
    person at most. `reachable_only`: only for people something can be sent to (a device
    subscribed, or the missed-messages email turned on); in a big room most have neither,
    and composing theirs was most of the job's cost."""
    room = message.room
    if message.is_deleted or room.archived_at is not None or message.is_assistant:
        return []
    members = Membership.objects.filter(room=room, user__is_active=True).exclude(
        request=Membership.Request.DECLINED
    )
    if reachable_only:
        members = members.filter(
            Q(user__email_missed=True) | Q(user__in=PushSubscription.objects.values("user_id"))
        )
    memberships = [
        m
        for m in members.select_related("user")
        if m.user_id not in (message.author_id, actor_id) and m.last_read_seq < message.seq
    ]
    people = {m.user_id for m in memberships}
    unread_seqs = _unread_seqs(message, memberships)
    causes = {uid for uid in (message.author_id, actor_id) if uid is not None}
    blockers = _blockers(people, causes)
    looking = presence.viewing(people)
    author = message.author
    notes = []
    for membership in memberships:
        user = membership.user
        if user.pk in blockers or room.pk in looking.get(user.pk, ()):
            continue
        reason = _reason(message, room, membership)
        if reason is None:
            continue
        unread = len(unread_seqs) - bisect.bisect_right(unread_seqs, membership.last_read_seq)
        with translation.override(_language(user)):
            note = _compose(message, room, author, user, reason, unread)
        notes.append(replace(note, message_id=message.pk, actor_id=actor_id, unread=unread))
    return notes


def again(check: dict[str, Any], queued: dict[str, Any]) -> dict[str, Any] | None:
    """A queued push decided anew as it is sent, which can be long after the post (a busy
        push service, back-off): nothing if the message was deleted or read meanwhile, the
        person left or was removed, blocked whoever caused it, or the room was muted or
        archived; otherwise the message as it reads now, with the person's current choices. A
    push about being added is dropped once the person is out of the group again; others
    (`queued`, the payload recorded) go as recorded to a person still active."""
    user_id = check.get("user_id")
    if not isinstance(user_id, int):
        return None
    message_id = check.get("message_id")
    if message_id is not None:
        message = Message.objects.select_related("room", "author").filter(pk=message_id).first()
        if message is None or message.is_deleted or message.room.archived_at is not None:
            return None
        membership = (
            Membership.objects.filter(room_id=message.room_id, user_id=user_id, user__is_active=True)
            .exclude(request=Membership.Request.DECLINED)
            .select_related("user")
            .first()
        )
        if membership is None or membership.last_read_seq >= message.seq:
            return None
        causes = {uid for uid in (message.author_id, check.get("actor_id")) if uid is not None}
        if _blockers({membership.user_id}, causes):
            return None
        reason = _reason(message, message.room, membership)
        if reason is None:
            return None
        user = membership.user
        with translation.override(_language(user)):
            note = _compose(
                message, message.room, message.author, user, reason, int(check.get("unread") or 0)
            )
        return note.payload()
    room_id = check.get("room_id")
    if (
        room_id is not None
        and not Membership.objects.filter(
            room_id=room_id, user_id=user_id, room__archived_at__isnull=True, user__is_active=True
        ).exists()
    ):
        return None
    if not User.objects.filter(pk=user_id, is_active=True).exists():
        return None
    # Whom it is for, also in a push recorded before payloads said so (the worker drops a
    # push for anyone but the person signed in on the browser).
    return {**queued, "to": user_id}


def _compose(
    message: Message, room: Room, author: User | None, user: User, reason: str, unread: int
) -> Notification:
    url = reverse("rooms:message", args=[room.pk, message.seq])
    tag = room_tag(room.pk)
    if reason == "request":
        return Notification(
            user.pk, reason, f"calpico-request-{room.pk}", gettext("New message request"), "", url
        )
    if reason == "members":
        return Notification(user.pk, reason, tag, room.title, message.system_text, url)
    name = author.name if author is not None else message.sender_name
    place = room.title if room.is_group else name
    # An encrypted message's text is only in its members' browsers: never in a push.
    text = message.preview if user.push_show_text and not message.is_encrypted else ""
    if reason == "direct":
        title = name
        body = text or format_names(gettext("New message from %(name)s"), name=name)
    elif reason == "mention":
        title = gettext("%(name)s mentioned you in %(room)s") % {"name": name, "room": place}
        body = text
    else:
        title = room.title
        body = (
            f"{name}: {text}"
            if text
            else format_names(gettext("New message from %(name)s in %(room)s"), name=name, room=room.title)
        )
    if unread > 1:
        count = ngettext("%(count)d new message", "%(count)d new messages", unread) % {"count": unread}
        body = f"{count}\n{body}" if body else count
    return Notification(user.pk, reason, tag, title, body, url)


def for_added(room: Room, actor_id: int | None, user_ids: list[int]) -> list[Notification]:
    """Being added to a group, for each person added (not by themselves)."""
    if room.archived_at is not None:
        return []
    users = list(User.objects.filter(pk__in=user_ids, is_active=True).exclude(pk=actor_id))
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    blockers = _blockers({u.pk for u in users}, {actor_id} if actor_id else set())
    notes = []
    for user in users:
        if user.pk in blockers:
            continue
        with translation.override(_language(user)):
            if actor is not None:
                body = gettext("%(name)s added you to %(room)s") % {"name": actor.name, "room": room.title}
            else:
                body = gettext("You were added to %(room)s") % {"room": room.title}
            notes.append(
                Notification(
                    user.pk,
                    "added",
                    room_tag(room.pk),
                    room.title,
                    body,
                    room.get_absolute_url(),
                    room_id=room.pk,
                )
            )
    return notes


def for_notice(notice: Notice) -> list[Notification]:
    """A moderator's notice, unless a page of the person's is in front of them (it shows it)."""
    user = notice.user
    if not user.is_active or notice.seen_at is not None or presence.viewing([user.pk]):
        return []
    with translation.override(_language(user)):
        return [
            Notification(
                user.pk, "notice", "calpico-notice", gettext("Calpico"), notice.text, reverse("rooms:index")
            )
        ]

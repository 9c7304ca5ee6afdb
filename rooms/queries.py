"""Read-side helpers for pages: each costs a fixed number of queries, however many
messages or rooms there are."""

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from accounts.models import User
from accounts.services import blocked_ids
from rooms.models import Membership, Message, Reaction, Room, reaction_chips


@dataclass(frozen=True)
class HistoryPage:
    messages: list[Message]
    has_older: bool

    @property
    def oldest_seq(self) -> int | None:
        return self.messages[0].seq if self.messages else None


def history_page(
    room: Room, *, before: int | None = None, size: int | None = None, hidden: Collection[int] = ()
) -> HistoryPage:
    """Up to `size` messages before sequence number `before` (or the newest), oldest first,
    with their reactions (but those of `hidden` people)."""
    size = size or settings.MESSAGES_PER_PAGE
    query = Message.objects.filter(room=room).select_related("author", "reply_to", "reply_to__author")
    if before is not None:
        query = query.filter(seq__lt=before)
    rows = list(query.order_by("-seq")[: size + 1])
    has_older = len(rows) > size
    messages = rows[:size][::-1]
    for message in messages:
        message.room = room  # the room the page already has, not a copy per message
    attach_reactions(messages, hidden=hidden)
    return HistoryPage(messages=messages, has_older=has_older)


# What a chip shows of a reaction: the emoji, and who (a member's name, or the assistant's).
REACTION_FIELDS = (
    "message",
    "user",
    "is_assistant",
    "persona",
    "emoji",
    "user__username",
    "user__display_name",
)


def attach_reactions(messages: list[Message], *, hidden: Collection[int] = ()) -> None:
    """Give each message its reaction chips (`Message.reaction_chips`), leaving out the
    reactions of `hidden` people (those the viewer blocked): one query for them all, none
    when no message was ever reacted to."""
    reacted = [m.pk for m in messages if m.reactions_changed_at is not None]
    rows: dict[int, list[Reaction]] = {}
    if reacted:
        reactions = (
            Reaction.objects.filter(message_id__in=reacted)
            .select_related("user")
            .only(*REACTION_FIELDS)
            .order_by("created_at", "pk")
        )
        for reaction in reactions:
            rows.setdefault(reaction.message_id, []).append(reaction)
    for message in messages:
        message.reaction_chips = reaction_chips(rows.get(message.pk, ()), hidden)


def room_members(room: Room) -> list[User]:
    """Members, the owner first, then by when they joined."""
    memberships = Membership.objects.filter(room=room).select_related("user").order_by("joined_at", "pk")
    members = []
    for membership in memberships:
        # The role travels with the person for pages that list members.
        membership.user.room_membership = membership  # type: ignore[attr-defined]
        members.append(membership.user)
    members.sort(key=lambda u: u.pk != room.owner_id)
    return members


def room_title(room: Room, viewer: User, members: list[User] | None = None) -> str:
    if room.is_group or room.is_private:
        return room.title
    if members is None:
        members = room_members(room)
    other = next((m for m in members if m.pk != viewer.pk), None)
    return other.name if other else "Direct message"


@dataclass(frozen=True)
class SidebarEntry:
    room: Room
    title: str
    other: User | None
    unread: int
    last_message: Message | None
    muted: bool


class Sidebar(list):
    """The sidebar's entries, and how many message requests wait outside it."""

    def __init__(self, entries, *, message_requests: int = 0, blocked: frozenset[int] = frozenset()) -> None:
        super().__init__(entries)
        self.message_requests = message_requests
        # People the user blocked: their messages never show as a preview.
        self.blocked = blocked


def sidebar_entries(user: User) -> Sidebar:
    """All the user's rooms, most recently active first, with preview and unread count."""
    rows = list(
        Membership.objects.filter(user=user, room__archived_at__isnull=True)
        .select_related("room", "room__last_message", "room__last_message__author")
        .order_by("-room__last_activity_at", "-room_id")
    )
    # Message requests are not in the list; they are only counted, from the same rows.
    memberships = [m for m in rows if m.request == Membership.Request.NONE]
    blocked = frozenset(blocked_ids(user))
    pending = sum(
        1
        for m in rows
        if m.request == Membership.Request.PENDING
        and m.room.last_message is not None
        and m.room.last_message.author_id not in blocked
    )
    direct_ids = [m.room_id for m in memberships if m.room.is_direct]
    others = {
        m.room_id: m.user
        for m in Membership.objects.filter(room_id__in=direct_ids).exclude(user=user).select_related("user")
    }
    entries = []
    for membership in memberships:
        room = membership.room
        other = others.get(room.pk)
        title = room.title if not room.is_direct else (other.name if other else "Direct message")
        entries.append(
            SidebarEntry(
                room=room,
                title=title,
                other=other,
                unread=max(room.last_seq - membership.last_read_seq, 0),
                last_message=room.last_message,
                muted=membership.muted,
            )
        )
    # The private assistant room is pinned at the top.
    entries.sort(key=lambda entry: not entry.room.is_private)
    return Sidebar(entries, message_requests=pending, blocked=blocked)


def message_requests(user: User) -> list[Membership]:
    """Direct rooms from people I share no room with, that have a message, newest first."""
    return list(
        Membership.objects.filter(
            user=user,
            request=Membership.Request.PENDING,
            room__archived_at__isnull=True,
            room__last_message__isnull=False,
        )
        .exclude(room__last_message__author__in=blocked_ids(user))
        .select_related("room", "room__last_message", "room__last_message__author")
        .order_by("-room__last_activity_at")
    )


# Assistant replies change as they stream and end: a resume resends the recent ones.
ASSISTANT_REPLY_WINDOW = dt.timedelta(minutes=30)


def catch_up(
    room_id: int, last_seq: int, oldest: int, since: dt.datetime | None
) -> tuple[list[Message] | None, list[Message], int]:
    """What a page that has seqs `oldest` to `last_seq` of the room missed: (messages after
    `last_seq`, messages it has that changed since `since`, the newest seq). None instead
    of the messages when there is more than a catch-up sends (WS_CATCH_UP_LIMIT, both kinds
    together: `since` and `oldest` are the page's to choose): the page reloads then."""
    limit = settings.WS_CATCH_UP_LIMIT
    query = Message.objects.filter(room_id=room_id).select_related("room", "author", "reply_to__author")
    missed = list(query.filter(seq__gt=last_seq).order_by("seq")[: limit + 1])
    if len(missed) > limit:
        return None, [], last_seq
    changed: list[Message] = []
    if since is not None:
        room_limit = limit - len(missed)
        changed = list(
            query.filter(seq__gte=oldest, seq__lte=last_seq)
            .filter(
                Q(edited_at__gte=since)
                | Q(deleted_at__gte=since)
                | Q(reactions_changed_at__gte=since)
                | Q(kind=Message.Kind.ASSISTANT, created_at__gte=since - ASSISTANT_REPLY_WINDOW)
            )
            .order_by("seq")[: room_limit + 1]
        )
        if len(changed) > room_limit:
            return None, [], last_seq
    attach_reactions(missed + changed)
    newest = missed[-1].seq if missed else last_seq
    return missed, changed, newest

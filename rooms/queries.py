"""Read-side helpers for pages: each costs a fixed number of queries, however many
messages or rooms there are."""

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from accounts.models import User
from accounts.services import block_relations, blocked_ids
from rooms.compiled import CompiledModels, compiled
from rooms.grouping import lay_out
from rooms.models import Membership, Message, Reaction, Room, reaction_chips


@dataclass(frozen=True)
class HistoryPage:
    """Consecutive messages of a room, oldest first. `has_newer`: the room goes on after
    them (the page shows an older window, not the latest messages)."""

    messages: list[Message]
    has_older: bool
    # The reader's read position when they opened the room, and the seq of the message the
    # "New messages" line goes above if it is on this page (rooms/grouping.py).
    unread_after: int | None = None
    unread_seq: int | None = None
    has_newer: bool = False

    @property
    def oldest_seq(self) -> int | None:
        return self.messages[0].seq if self.messages else None

    @property
    def newest_seq(self) -> int | None:
        return self.messages[-1].seq if self.messages else None

    @property
    def unread_above(self) -> bool:
        """Whether the "New messages" line belongs on a page of older history: the link to
        it carries `unread_after` on."""
        oldest = self.oldest_seq
        return self.unread_after is not None and oldest is not None and self.unread_after + 1 < oldest


_HISTORY_RELATED = ("author", "reply_to", "reply_to__author")
# Sentinels the compiled queries (rooms/compiled.py) are built with: never an id (ids are
# positive); a seq must be positive (a lookup below a field's range is left out of the
# SQL), so its sentinel is far beyond any room's.
_USER, _ROOM, _SEQ = -7_000_001, -7_000_002, 9_000_000_000_000_000_003


def _history(room: Room):
    return Message.objects.filter(room=room).select_related(*_HISTORY_RELATED)


def history_page(
    room: Room,
    *,
    before: int | None = None,
    size: int | None = None,
    hidden: Collection[int] = (),
    unread_after: int | None = None,
    reactions: bool = True,
) -> HistoryPage:
    """Up to `size` messages before sequence number `before` (or the newest), oldest first,
    with their reactions (but those of `hidden` people; `reactions=False`: the caller
    attaches them), laid out by rooms.grouping (which continue a group, and the "New
    messages" line after `unread_after`)."""
    size = size or settings.MESSAGES_PER_PAGE

    def build() -> CompiledModels:
        query = Message.objects.filter(room_id=_ROOM).select_related(*_HISTORY_RELATED)
        if before is None:
            return CompiledModels(query.order_by("-seq")[: size + 1], room=_ROOM)
        return CompiledModels(query.filter(seq__lt=_SEQ).order_by("-seq")[: size + 1], room=_ROOM, seq=_SEQ)

    values = {"room": room.pk} if before is None else {"room": room.pk, "seq": before}
    rows = compiled(("history_page", size, before is None), build).run(**values)
    return _page(
        room,
        rows[:size][::-1],
        has_older=len(rows) > size,
        has_newer=before is not None and before <= room.last_seq,
        hidden=hidden,
        unread_after=unread_after,
        reactions=reactions,
    )


def history_after(
    room: Room,
    after: int,
    *,
    size: int | None = None,
    hidden: Collection[int] = (),
    reactions: bool = True,
) -> HistoryPage:
    """Up to `size` messages after sequence number `after`, oldest first (reactions and
    layout as `history_page`)."""
    size = size or settings.MESSAGES_PER_PAGE
    rows = list(_history(room).filter(seq__gt=after).order_by("seq")[: size + 1])
    return _page(
        room,
        rows[:size],
        # With nothing after it, no oldest message to load older ones from.
        has_older=after >= 1 and bool(rows),
        has_newer=len(rows) > size,
        hidden=hidden,
        reactions=reactions,
    )


def history_around(
    room: Room,
    seq: int,
    *,
    context: int | None = None,
    hidden: Collection[int] = (),
    reactions: bool = True,
) -> HistoryPage:
    """The message at `seq` with up to `context` messages on each side, oldest first.
    Two queries (and the reactions'), however long the room."""
    context = context or settings.JUMP_CONTEXT
    older = list(_history(room).filter(seq__lt=seq).order_by("-seq")[: context + 1])
    newer = list(_history(room).filter(seq__gte=seq).order_by("seq")[: context + 2])
    return _page(
        room,
        older[:context][::-1] + newer[: context + 1],
        has_older=len(older) > context,
        has_newer=len(newer) > context + 1,
        hidden=hidden,
        reactions=reactions,
    )


def _page(
    room: Room,
    messages: list[Message],
    *,
    has_older: bool,
    has_newer: bool,
    hidden: Collection[int],
    unread_after: int | None = None,
    reactions: bool = True,
) -> HistoryPage:
    for message in messages:
        message.room = room  # the room the page already has, not a copy per message
    if reactions:
        attach_reactions(messages, hidden=hidden)
    unread_seq = lay_out(messages, unread_after=unread_after)
    return HistoryPage(messages, has_older, unread_after, unread_seq, has_newer)


# What a chip shows of a reaction: the emoji, and who (a member's name, or the assistant's).
REACTION_FIELDS = (
    "message",
    "user",
    "is_assistant",
    "persona",
    "reason",
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
    memberships = compiled(
        "room_members",
        lambda: CompiledModels(
            Membership.objects.filter(room_id=_ROOM).select_related("user").order_by("joined_at", "pk"),
            room=_ROOM,
        ),
    ).run(room=room.pk)
    members = []
    for membership in memberships:
        # The role travels with the person for pages that list members.
        membership.user.room_membership = membership
        members.append(membership.user)
    members.sort(key=lambda u: u.pk != room.owner_id)
    return members


def visible_read_positions(viewer: User, members: list[User], hidden: Collection[int]) -> dict[int, int]:
    """How far each other member of a room has read, as far as `viewer` may see it (for
    "Seen"): nobody's if the viewer does not share read receipts, and never the position of
    someone who does not, of someone who has not accepted the room (a message request), or
    of anyone in `hidden` (people the viewer blocked or who blocked the viewer). `members`
    come from room_members()."""
    if not viewer.read_receipts:
        return {}
    return {
        member.pk: member.room_membership.last_read_seq  # type: ignore[attr-defined]
        for member in members
        if member.pk != viewer.pk
        and member.pk not in hidden
        and member.read_receipts
        and member.room_membership.request == Membership.Request.NONE  # type: ignore[attr-defined]
    }


def room_read_positions(room_id: int, viewer_id: int, hidden: Collection[int]) -> dict[int, int]:
    """`visible_read_positions` for a socket, which knows whether its viewer shares read
    receipts and whom they blocked or were blocked by (`hidden`): one query."""
    rows = (
        Membership.objects.filter(room_id=room_id, request=Membership.Request.NONE, user__read_receipts=True)
        .exclude(user_id=viewer_id)
        .values_list("user_id", "last_read_seq")
    )
    return {user_id: seq for user_id, seq in rows if user_id not in hidden}


def room_title(room: Room, viewer: User, members: list[User] | None = None) -> str:
    if room.is_group or room.is_private:
        return room.title
    if members is None:
        members = room_members(room)
    other = next((m for m in members if m.pk != viewer.pk), None)
    return other.name if other else "Direct message"


def room_titles(rooms: Iterable[Room], viewer: User) -> dict[int, str]:
    """Each room's name as the sidebar shows it to `viewer`: its title, or for a direct
    room the other person's name. At most one query."""
    rooms = list(rooms)
    direct_ids = [room.pk for room in rooms if room.is_direct]
    others = {}
    if direct_ids:
        others = {
            m.room_id: m.user.name
            for m in Membership.objects.filter(room_id__in=direct_ids)
            .exclude(user=viewer)
            .select_related("user")
        }
    return {
        room.pk: others.get(room.pk, "Direct message") if room.is_direct else room.title for room in rooms
    }


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

    def __init__(
        self,
        entries,
        *,
        message_requests: int = 0,
        blocked: frozenset[int] = frozenset(),
        blocked_by: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(entries)
        self.message_requests = message_requests
        # People the user blocked: their messages never show as a preview.
        self.blocked = blocked
        # People who blocked the user: the room page shows them no read receipts either way.
        self.blocked_by = blocked_by


def sidebar_entries(user: User) -> Sidebar:
    """All the user's rooms, most recently active first, with preview and unread count."""
    rows = compiled(
        "sidebar_entries",
        lambda: CompiledModels(
            Membership.objects.filter(user_id=_USER, room__archived_at__isnull=True)
            .select_related("room", "room__last_message", "room__last_message__author")
            .order_by("-room__last_activity_at", "-room_id"),
            user=_USER,
        ),
    ).run(user=user.pk)
    # Message requests are not in the list; they are only counted, from the same rows.
    memberships = [m for m in rows if m.request == Membership.Request.NONE]
    blocked_set, blocked_by = block_relations(user)
    blocked = frozenset(blocked_set)
    pending = sum(
        1
        for m in rows
        if m.request == Membership.Request.PENDING
        and m.room.last_message is not None
        and m.room.last_message.author_id not in blocked
    )
    direct_ids = [m.room_id for m in memberships if m.room.is_direct]
    # Someone in no direct room is spared building a query that would find nothing.
    others = {
        m.room_id: m.user
        for m in (
            Membership.objects.filter(room_id__in=direct_ids).exclude(user=user).select_related("user")
            if direct_ids
            else ()
        )
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
    return Sidebar(entries, message_requests=pending, blocked=blocked, blocked_by=frozenset(blocked_by))


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
    room_id: int, last_seq: int, oldest: int, since: dt.datetime | None, *, detached: bool = False
) -> tuple[list[Message] | None, list[Message], int]:
    """What a page that has seqs `oldest` to `last_seq` of the room missed: (messages after
    `last_seq`, messages it has that changed since `since`, the newest seq). None instead
    of the messages when there is more than a catch-up sends (WS_CATCH_UP_LIMIT, both kinds
    together: `since` and `oldest` are the page's to choose): the page reloads then.
    `detached`: the page shows an older window (a link to a message), which does not take
    the messages after it, only the changes to those it has."""
    limit = settings.WS_CATCH_UP_LIMIT
    query = Message.objects.filter(room_id=room_id).select_related("room", "author", "reply_to__author")
    missed = [] if detached else list(query.filter(seq__gt=last_seq).order_by("seq")[: limit + 1])
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

"""Who may see, post in and administer a room: the one place these rules live.

Everything that reaches a room or a message by an id from a URL, a form or a socket frame
goes through an `access_*` function here. A room the user is not a member of does not
exist for them: the answer is 404, never 403, so ids reveal nothing.

Every id (and seq) from outside is read by `parse_id` (`parse_seq`): a whole number a 64-bit
column holds, or nothing. URLs take ids through the `<id:...>` converter, which uses it too,
so an id out of range is a 404 before any view runs.
"""

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils.translation import gettext as _

from accounts.models import User
from rooms.compiled import CompiledModels, compiled
from rooms.models import Invite, Membership, Message, Room

# The largest id or seq: PostgreSQL's bigint and SQLite's INTEGER hold no more.
MAX_ID = 2**63 - 1


def parse_id(value: object) -> int | None:
    """An id from a URL, a form, a query string or a socket frame: a whole number from 1 to
    MAX_ID, given as ASCII digits or as an int (never a bool). Anything else is None."""
    return _bounded_int(value, 1)


def parse_seq(value: object) -> int | None:
    """A position in a room (`seq`, `last_seq`, `before`): like `parse_id`, but 0 (before
    the first message) is one too."""
    return _bounded_int(value, 0)


def _bounded_int(value: object, lowest: int) -> int | None:
    if isinstance(value, str):
        # Not int(value) as it is: that reads " 12", "+12", "1_2" and "١٢" (Arabic-Indic).
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            return None
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        return None
    return number if lowest <= number <= MAX_ID else None


class IdConverter:
    """`<id:room_id>` in a URL pattern: `parse_id`'s ids, anything else does not match (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        parsed = parse_id(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not an id")
        return parsed

    def to_url(self, value: int) -> str:
        return str(value)


def access_membership(user: User, room_id: int | str | None, *, with_assistant: bool = False) -> Membership:
    """The user's membership of a room they belong to, with the room; else Http404.
    `with_assistant`: the room's assistant settings joined too (the room page names the
    assistant in its composer and mention list), `room.assistant` raising
    DoesNotExist without a query for a room that has none."""
    room_id = parse_id(room_id)
    if room_id is None:
        raise Http404(_("No such room."))
    if not user.is_authenticated or not user.is_active:
        raise Http404(_("No such room."))
    found = compiled(("access_membership", with_assistant), lambda: _membership_query(with_assistant)).run(
        room=room_id, user=user.pk
    )
    membership: Membership | None = found[0] if found else None
    if membership is None:
        raise Http404(_("No such room."))
    membership.user = user  # already loaded: joining it again cost more than the row
    return membership


# Sentinels for the compiled query (rooms/compiled.py): never an id.
_ROOM, _USER = -7_000_002, -7_000_001


def _membership_query(with_assistant: bool) -> CompiledModels:
    related = ("room", "room__assistant") if with_assistant else ("room",)
    return CompiledModels(
        Membership.objects.select_related(*related)
        .filter(room_id=_ROOM, user_id=_USER, room__archived_at__isnull=True)
        .exclude(request=Membership.Request.DECLINED)
        .order_by("pk")[:1],
        room=_ROOM,
        user=_USER,
    )


def access_admin_membership(user: User, room_id: int | str | None) -> Membership:
    """The membership of a group's owner or admin; Http404 outside the room, PermissionDenied
    for any other member."""
    membership = access_membership(user, room_id)
    if not can_administer(user, membership.room, membership):
        raise PermissionDenied(_("Only the group's owner and admins can do that."))
    return membership


def access_owner_membership(user: User, room_id: int | str | None) -> Membership:
    """The membership of a group's owner; Http404 outside the room, PermissionDenied for
    any other member."""
    membership = access_membership(user, room_id)
    if not is_owner(user, membership.room):
        raise PermissionDenied(_("Only the group's owner can do that."))
    return membership


def access_pending_request(user: User, room_id: int | str | None) -> Membership:
    """The user's membership of a conversation whose message request waits for their
    answer; Http404 for any other room, as if there were no request."""
    membership = access_membership(user, room_id)
    if membership.request != Membership.Request.PENDING:
        raise Http404(_("No such request."))
    return membership


def shows_presence(membership: Membership) -> bool:
    """Whether this member's online dot shows in the room: not while they have not accepted
    the conversation's request (a stranger would learn they are around)."""
    return membership.request == Membership.Request.NONE


def access_member(room: Room, user_id: object) -> User:
    """A member of the room, by an id from a form. Any other id (not a number, nobody,
    someone outside the room) is a ValidationError with a message for the person."""
    user_id = parse_id(user_id)
    if user_id is None:
        raise ValidationError(_("Choose a member."))
    membership = Membership.objects.select_related("user").filter(room=room, user_id=user_id).first()
    if membership is None:
        raise ValidationError(_("That person is not in this group."))
    return membership.user


def is_owner(user: User, room: Room) -> bool:
    """The group's owner: everything an admin does, plus naming admins and handing over."""
    return room.is_group and room.owner_id == user.pk


def can_administer(user: User, room: Room, membership: Membership | None = None) -> bool:
    """Owner or admin of a group: rename, add and remove members, delete others' messages,
    manage invite links. `membership` (the user's, if at hand) saves a query."""
    if not room.is_group:
        return False
    if room.owner_id == user.pk:
        return True
    if membership is None or membership.user_id != user.pk or membership.room_id != room.pk:
        membership = Membership.objects.filter(room=room, user=user).only("role").first()
    return membership is not None and membership.role == Membership.Role.ADMIN


def can_remove_member(
    actor: User, room: Room, target: Membership, actor_membership: Membership | None = None
) -> bool:
    """The owner removes anyone else; an admin removes ordinary members only."""
    if target.user_id == actor.pk or target.user_id == room.owner_id:
        return False
    if is_owner(actor, room):
        return True
    return target.role == Membership.Role.MEMBER and can_administer(actor, room, actor_membership)


def can_invite(user: User, room: Room, membership: Membership | None = None) -> bool:
    """Create invite links: any member unless the owner keeps that to admins."""
    if not room.is_group:
        return False
    return room.members_can_invite or can_administer(user, room, membership)


def can_manage_invite(user: User, invite: Invite, membership: Membership) -> bool:
    """See and revoke an invite link on the group's settings: the owner and admins any of
    the group's links, a member only the links they made. `membership` is the user's."""
    if invite.room_id != membership.room_id or not membership.room.is_group:
        return False
    return invite.created_by_id == user.pk or can_administer(user, membership.room, membership)


def visible_invites(user: User, membership: Membership, invites: Iterable[Invite]) -> list[Invite]:
    """The links of `invites` that the member sees on the group's settings page."""
    return [invite for invite in invites if can_manage_invite(user, invite, membership)]


def access_invite(membership: Membership, invite_id: int | str) -> Invite:
    """An invite link of the member's room; Http404 for any other id. Whether they may
    revoke it is `can_manage_invite`."""
    parsed = parse_id(invite_id)
    invite = None
    if parsed is not None:
        invite = Invite.objects.filter(pk=parsed, room_id=membership.room_id).first()
    if invite is None:
        raise Http404(_("No such invite link."))
    return invite


def access_message(membership: Membership, message_id: int | str) -> Message:
    """A message in the member's room; Http404 for any other id."""
    parsed = parse_id(message_id)
    if parsed is None:
        raise Http404(_("No such message."))
    message = (
        Message.objects.select_related("author", "reply_to__author")
        .filter(pk=parsed, room_id=membership.room_id)
        .first()
    )
    if message is None:
        raise Http404(_("No such message."))
    return message


def access_message_at(membership: Membership, seq: object) -> Message:
    """The message at position `seq` of the member's room (its `/r/<room>/m/<seq>/`
    address); Http404 for any other seq."""
    parsed = parse_id(seq)
    message = None
    if parsed is not None:
        message = (
            Message.objects.select_related("author", "reply_to__author")
            .filter(room_id=membership.room_id, seq=parsed)
            .first()
        )
    if message is None:
        raise Http404(_("No such message."))
    return message


def can_change_message(user: User, message: Message) -> bool:
    """Only the author edits a message, and only while it exists."""
    return message.author_id == user.pk and message.kind == Message.Kind.TEXT and message.deleted_at is None


def can_delete_message(user: User, message: Message, membership: Membership | None = None) -> bool:
    """The author deletes their message; a group's owner and admins delete anyone's (and
    the assistant's), never system messages."""
    if message.deleted_at is not None or message.kind == Message.Kind.SYSTEM:
        return False
    if message.author_id == user.pk and message.kind == Message.Kind.TEXT:
        return True
    return can_administer(user, message.room, membership)


def access_own_message(user: User, membership: Membership, message_id: int | str) -> Message:
    """A message in the member's room that they may edit; Http404 for any other id,
    PermissionDenied for someone else's message."""
    message = access_message(membership, message_id)
    if not can_change_message(user, message):
        raise PermissionDenied(_("You can only change your own messages."))
    return message

"""Direct rooms between two people, and message requests from strangers."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import do_block, has_blocked
from rooms import live, ratelimits
from rooms.models import Membership, Room
from rooms.services.core import announce_on_commit
from rooms.services.messages import announce_read_on_commit, tells_room_reads


def direct_key(a: User, b: User, *, encrypted: bool = False) -> str:
    """One direct room per pair, and one end-to-end encrypted room per pair besides."""
    low, high = sorted([a.pk, b.pk])
    return f"e2ee:{low}:{high}" if encrypted else f"{low}:{high}"


def _share_a_room(user: User, other: User) -> bool:
    """Whether the two are already in a group together (or talk directly already)."""
    return (
        Membership.objects.filter(user=other, room__memberships__user=user, room__archived_at__isnull=True)
        .exclude(room__kind=Room.Kind.PRIVATE)
        .filter(request=Membership.Request.NONE)
        .exists()
    )


def do_open_direct_room(user: User, other: User, *, encrypted: bool = False) -> Room:
    """The one direct room of this pair (or, `encrypted`, its one end-to-end encrypted
    room), created the first time.

    To someone `user` shares no room with, it arrives as a message request: not in their
    list, notifying nothing, until they accept. Someone who blocked `user` cannot be
    reached this way.
    """
    if user.pk == other.pk:
        raise ValidationError(_("You can't send a direct message to yourself."), code="self")
    if not other.is_active:
        raise ValidationError(_("That account is not available."), code="inactive")
    if has_blocked(other.pk, user.pk):
        raise ValidationError(_("You can't start a conversation with this person."), code="blocked")
    key = direct_key(user, other, encrypted=encrypted)
    room = Room.objects.filter(direct_key=key).first()
    if room is not None:
        # Opening it myself answers a request I had from them, or brings back one I declined.
        Membership.objects.filter(room=room, user=user).exclude(request=Membership.Request.NONE).update(
            request=Membership.Request.NONE
        )
        return room
    stranger = not _share_a_room(user, other)
    if stranger:
        ratelimits.hit(ratelimits.strangers_messaged(), user.pk)
    try:
        with transaction.atomic():
            room = Room.objects.create(kind=Room.Kind.DIRECT, direct_key=key, encrypted=encrypted)
            Membership.objects.bulk_create(
                [
                    Membership(room=room, user=user),
                    Membership(
                        room=room,
                        user=other,
                        request=Membership.Request.PENDING if stranger else Membership.Request.NONE,
                    ),
                ]
            )
    except IntegrityError:
        # Both people opened the room at the same moment; the other request made it.
        return Room.objects.get(direct_key=key)
    if not stranger:
        announce_on_commit(live.announce_members_changed, room, added=[other])
    return room


def do_accept_request(membership: Membership) -> None:
    """Accept a message request: the room joins my list like any direct room."""
    if membership.request == Membership.Request.NONE:
        return
    Membership.objects.filter(pk=membership.pk).update(request=Membership.Request.NONE)
    membership.request = Membership.Request.NONE
    room, user = membership.room, membership.user
    announce_on_commit(live.announce_members_changed, room, added=[user])
    # What I read while it was a request, in silence, shows from now on.
    if tells_room_reads(membership):
        announce_read_on_commit(room.pk, user.pk, 0, membership.last_read_seq)


def do_decline_request(membership: Membership) -> None:
    """Delete a message request: it leaves my view. The sender is not told."""
    Membership.objects.filter(pk=membership.pk).update(request=Membership.Request.DECLINED)
    membership.request = Membership.Request.DECLINED


def do_block_from_request(membership: Membership) -> User | None:
    """Delete a message request and block its sender, together. Returns the sender."""
    with transaction.atomic():
        other = (
            Membership.objects.filter(room=membership.room)
            .exclude(user=membership.user)
            .select_related("user")
            .first()
        )
        sender = other.user if other is not None else None
        do_decline_request(membership)
        if sender is not None:
            do_block(membership.user, sender)
    return sender

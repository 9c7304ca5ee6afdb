"""Every change to rooms, memberships and messages.

Each public `do_*` function is one transaction that validates, writes and then announces
the change after commit (`rooms.signals`). Views and the WebSocket consumer call these and
nothing else, so the rules hold on every path. Callers check access first
(`rooms.access`); these functions re-check what they need to stay consistent.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from accounts.models import User
from accounts.services import do_block, has_blocked
from rooms import ratelimits, signals
from rooms.access import can_administer, can_change_message, can_delete_message, can_remove_member, is_owner
from rooms.attachments import PendingAttachment
from rooms.markdown import render_message
from rooms.models import Invite, Membership, Message, Room

TITLE_MAX_LENGTH = 80


@dataclass(frozen=True)
class PostResult:
    message: Message
    created: bool


def _announce(signal, **kwargs) -> None:
    transaction.on_commit(lambda: signal.send(sender=Message, **kwargs))


def _member_usernames(room: Room) -> dict[str, int]:
    return {
        username.lower(): user_id
        for user_id, username in Membership.objects.filter(room=room).values_list("user_id", "user__username")
    }


def _append_message(
    room: Room,
    *,
    author: User | None,
    kind: str,
    body: str,
    html: str = "",
    mentioned_user_ids: list[int] | None = None,
    reply_to: Message | None = None,
    client_id: uuid.UUID | None = None,
    read_by: User | None = None,
    persona: str = "",
    state: str = Message.State.DONE,
    note: str = "",
    image=None,
    announce: bool = True,
) -> Message:
    """Give the message the room's next sequence number and store it (and, after commit,
    announce it, unless the caller will: see `announce_message`).

    Must run inside a transaction that holds the room's row lock (see `_lock_room`), so
    sequence numbers have no gaps and no duplicates.
    """
    now = timezone.now()
    seq = room.last_seq + 1
    message = Message.objects.create(
        room=room,
        seq=seq,
        kind=kind,
        author=author,
        body=body,
        html=html,
        mentioned_user_ids=mentioned_user_ids or [],
        reply_to=reply_to,
        client_id=client_id,
        created_at=now,
        persona=persona,
        state=state,
        note=note,
        image=image,
    )
    Room.objects.filter(pk=room.pk).update(last_seq=seq, last_message=message, last_activity_at=now)
    room.last_seq, room.last_message, room.last_activity_at = seq, message, now
    read_by = read_by or author
    if read_by is not None:
        # My own message, or the system message about what I just did, is read by me.
        Membership.objects.filter(room=room, user=read_by).update(
            last_read_seq=Greatest(F("last_read_seq"), seq)
        )
    if announce:
        _announce(signals.message_posted, message=message)
    return message


def announce_message(message: Message) -> None:
    """Show a new message to the room now (after commit), for callers that stored it
    with `announce=False`."""
    signals.message_posted.send(sender=Message, message=message)


def _lock_room(room_id: int) -> Room:
    # FOR UPDATE serializes writers per room on PostgreSQL; SQLite runs transactions
    # in IMMEDIATE mode (settings), which serializes all writers.
    return Room.objects.select_for_update().get(pk=room_id)


def _system_message(room: Room, text: str, *, actor: User | None = None) -> Message:
    return _append_message(room, author=None, kind=Message.Kind.SYSTEM, body=text, read_by=actor)


def do_post_system_message(room_id: int, text: str, *, actor: User | None = None) -> Message:
    """Tell the room what happened ("alice renamed the assistant to Planner")."""
    with transaction.atomic():
        return _system_message(_lock_room(room_id), text, actor=actor)


def clean_message_body(body: str, *, allow_empty: bool = False) -> str:
    """The text as it will be stored, or ValidationError with a message for the sender."""
    body = (body or "").replace("\r\n", "\n").strip()
    if not body and not allow_empty:
        raise ValidationError("Type a message first.", code="empty")
    limit = settings.MESSAGE_MAX_LENGTH
    if len(body) > limit:
        raise ValidationError(
            f"Messages are at most {limit:,} characters; this one has {len(body):,}.",
            code="too_long",
        )
    return body


def do_post_message(
    membership: Membership,
    body: str,
    *,
    client_id: uuid.UUID | None = None,
    reply_to_id: int | None = None,
    image=None,
) -> PostResult:
    """Post a message as the member, with an optional image (from `rooms.attachments.make_attachment`).
    Sending again with the same client_id stores nothing new and returns the first message.

    Raises ValidationError for empty or over-long text or a reply to a message that is not
    in this room. Text may be empty when there is an image.
    """
    body = clean_message_body(body, allow_empty=image is not None)
    author = membership.user
    # The image's file is saved first and removed again if the post does not go through.
    attachment = PendingAttachment(image)
    with attachment, transaction.atomic():
        room = _lock_room(membership.room_id)
        if client_id is not None:
            existing = Message.objects.filter(room=room, author=author, client_id=client_id).first()
            if existing is not None:
                return PostResult(existing, created=False)
        request = Membership.objects.filter(room=room, user=author).values_list("request", flat=True).first()
        if request is None:
            raise PermissionDenied("You are no longer a member of this room.")
        refusal = send_refusal(room, author)
        if refusal:
            raise ValidationError(refusal, code="blocked")
        # Replying to a message request accepts it.
        if request == Membership.Request.PENDING:
            Membership.objects.filter(room=room, user=author).update(request=Membership.Request.NONE)
            _announce(signals.members_changed, room=room, added=[author], removed=[])
        ratelimits.hit(ratelimits.messages_burst(), author.pk)
        ratelimits.hit(ratelimits.messages_sustained(), author.pk)
        reply_to = None
        if reply_to_id is not None:
            reply_to = Message.objects.filter(pk=reply_to_id, room=room).first()
            if reply_to is None:
                raise ValidationError("The message you replied to is not in this room.", code="reply_to")
        # Only text with an "@" can mention anyone: skip loading the member list otherwise.
        rendered = render_message(body, _member_usernames(room) if "@" in body else {})
        message = _append_message(
            room,
            author=author,
            kind=Message.Kind.TEXT,
            body=body,
            html=rendered.html,
            mentioned_user_ids=[uid for uid in rendered.mentioned_user_ids if uid != author.pk],
            reply_to=reply_to,
            client_id=client_id,
            image=attachment.name,
        )
        attachment.taken()
        # Inside the transaction: the assistant queues its run with the message, or not at all.

        signals.message_created.send(sender=Message, message=message, membership=membership)

    return PostResult(message, created=True)


def do_post_assistant_message(
    room_id: int,
    *,
    persona: str,
    body: str = "",
    state: str = Message.State.STREAMING,
    note: str = "",
    reply_to: Message | None = None,
    locked_room: Room | None = None,
    announce: bool = True,
) -> Message:
    """Add the assistant's message to the room: empty and streaming while a reply is being
    written, or finished at once (a refusal saying why it cannot answer).

    `locked_room`: the room, when the caller's transaction already holds its lock.
    `announce=False`: the caller announces it after commit (`announce_message`).
    """
    # Within the caller's transaction no savepoint is needed: it rolls back as a whole.
    with transaction.atomic(savepoint=locked_room is None):
        room = locked_room if locked_room is not None else _lock_room(room_id)
        return _append_message(
            room,
            author=None,
            kind=Message.Kind.ASSISTANT,
            body=body,
            html=render_message(body, {}, rich=True).html if body else "",
            reply_to=reply_to,
            persona=persona,
            state=state,
            note=note,
            announce=announce,
        )


def do_update_assistant_message(
    message: Message,
    *,
    body: str,
    state: str,
    note: str = "",
    persona: str | None = None,
    image=None,
) -> Message:
    """Store the assistant message's text (final or as far as it got), its state and the
    note saying why it stopped, and show it to the room."""
    message.body = body
    message.html = render_message(body, {}, rich=True).html if body else ""
    message.state = state
    message.note = note
    fields = ["body", "html", "state", "note"]
    if persona is not None:
        message.persona = persona
        fields.append("persona")
    if image is not None:
        message.image = image
        fields += ["image", "image_width", "image_height"]
    with transaction.atomic():
        message.save(update_fields=fields)
        _announce(signals.message_changed, message=message)
    return message


def do_edit_message(user: User, message: Message, body: str) -> Message:
    """Replace the text of the user's own message; it then shows as edited."""
    if not can_change_message(user, message):
        raise PermissionDenied("You can only edit your own messages.")
    body = clean_message_body(body)
    refusal = send_refusal(message.room, user)
    if refusal:
        raise ValidationError(refusal, code="blocked")
    with transaction.atomic():
        rendered = render_message(body, _member_usernames(message.room))
        message.body = body
        message.html = rendered.html
        message.mentioned_user_ids = [uid for uid in rendered.mentioned_user_ids if uid != user.pk]
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "html", "mentioned_user_ids", "edited_at"])
        _announce(signals.message_changed, message=message)
    return message


def do_delete_message(user: User, message: Message, *, membership: Membership | None = None) -> Message:
    """Delete a message: the author's own ("message deleted") or, for a group's owner and
    admins, anyone's ("removed by an admin")."""
    if not can_delete_message(user, message, membership):
        raise PermissionDenied("You can only delete your own messages.")
    removed_by = "" if message.author_id == user.pk else "admin"
    return _remove_message(message, removed_by=removed_by)


def do_remove_message_as_moderator(message: Message) -> Message:
    """A moderator's removal: everyone sees "removed by a moderator". The caller (the
    moderation service) checks the moderator and writes the audit entry."""
    return _remove_message(message, removed_by="moderator")


def _remove_message(message: Message, *, removed_by: str) -> Message:
    with transaction.atomic():
        image = message.image.name if message.image else ""
        message.body = ""
        message.html = ""
        message.mentioned_user_ids = []
        message.image = None
        message.removed_by = removed_by
        message.deleted_at = timezone.now()
        message.save(
            update_fields=["body", "html", "mentioned_user_ids", "image", "removed_by", "deleted_at"]
        )
        _announce(signals.message_changed, message=message)
        if image:
            # A deleted message's picture is gone too, once the delete is sure to stand.
            storage = message.image.storage
            transaction.on_commit(lambda: storage.delete(image))
    return message


def do_mark_read(membership: Membership, seq: int) -> None:
    """Everything up to `seq` is read; the read position never moves backwards."""
    room_last_seq = Subquery(Room.objects.filter(pk=OuterRef("room_id")).values("last_seq")[:1])
    Membership.objects.filter(pk=membership.pk).update(
        last_read_seq=Greatest(F("last_read_seq"), Least(Value(seq), room_last_seq))
    )


def do_set_muted(membership: Membership, muted: bool) -> None:
    """Mute or unmute a room for one member: no toasts or desktop notifications but for
    mentions of them."""
    membership.muted = muted
    membership.save(update_fields=["muted"])
    transaction.on_commit(lambda: signals.membership_updated.send(sender=Membership, membership=membership))


# Direct rooms


def direct_key(a: User, b: User) -> str:
    low, high = sorted([a.pk, b.pk])
    return f"{low}:{high}"


def _share_a_room(user: User, other: User) -> bool:
    """Whether the two are already in a group together (or talk directly already)."""
    return (
        Membership.objects.filter(user=other, room__memberships__user=user, room__archived_at__isnull=True)
        .exclude(room__kind=Room.Kind.PRIVATE)
        .filter(request=Membership.Request.NONE)
        .exists()
    )


def do_open_direct_room(user: User, other: User) -> Room:
    """The one direct room of this pair, created the first time.

    To someone `user` shares no room with, it arrives as a message request: not in their
    list, notifying nothing, until they accept. Someone who blocked `user` cannot be
    reached this way.
    """
    if user.pk == other.pk:
        raise ValidationError("You can't send a direct message to yourself.", code="self")
    if not other.is_active:
        raise ValidationError("That account is not available.", code="inactive")
    if has_blocked(other.pk, user.pk):
        raise ValidationError("You can't start a conversation with this person.", code="blocked")
    key = direct_key(user, other)
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
            room = Room.objects.create(kind=Room.Kind.DIRECT, direct_key=key)
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
        transaction.on_commit(
            lambda: signals.members_changed.send(sender=Message, room=room, added=[other], removed=[])
        )
    return room


def do_accept_request(membership: Membership) -> None:
    """Accept a message request: the room joins my list like any direct room."""
    if membership.request == Membership.Request.NONE:
        return
    Membership.objects.filter(pk=membership.pk).update(request=Membership.Request.NONE)
    membership.request = Membership.Request.NONE
    room, user = membership.room, membership.user
    transaction.on_commit(
        lambda: signals.members_changed.send(sender=Message, room=room, added=[user], removed=[])
    )


def do_decline_request(membership: Membership) -> None:
    """Delete a message request: it leaves my view. The sender is not told."""
    Membership.objects.filter(pk=membership.pk).update(request=Membership.Request.DECLINED)
    membership.request = Membership.Request.DECLINED


def do_block_from_request(membership: Membership) -> User | None:
    """Delete a message request and block its sender, together. Returns the sender."""
    with transaction.atomic():
        row = (
            Membership.objects.filter(room=membership.room)
            .exclude(user=membership.user)
            .select_related("user")
        )
        sender = row.first().user if row.exists() else None
        do_decline_request(membership)
        if sender is not None:
            do_block(membership.user, sender)
    return sender


def send_refusal(room: Room, author: User) -> str | None:
    """Why `author` may not send in this direct room, or None. Someone blocked by the other
    person gets a neutral reason that does not say so."""
    if not room.is_direct:
        return None
    other_id = (
        Membership.objects.filter(room=room).exclude(user=author).values_list("user_id", flat=True).first()
    )
    if other_id is None:
        return None
    if has_blocked(other_id, author.pk):
        return "You can't send messages in this conversation."
    if has_blocked(author.pk, other_id):
        return "You blocked this person. Unblock them to send messages."
    return None


# Groups


def clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError("Give the group a name.", code="empty")
    if len(title) > TITLE_MAX_LENGTH:
        raise ValidationError(
            f"Group names are at most {TITLE_MAX_LENGTH} characters; this one has {len(title)}.",
            code="too_long",
        )
    return title


def _check_room_size(current: int, adding: int) -> None:
    limit = settings.ROOM_MAX_MEMBERS
    if current + adding > limit:
        raise ValidationError(
            f"A group has at most {limit} members; this would make {current + adding}.",
            code="too_many_members",
        )


def _names(users: Iterable[User]) -> str:
    names = [u.name for u in users]
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def do_create_group(owner: User, title: str, members: Iterable[User]) -> Room:
    """A new group owned by `owner` with `members` (the owner is added if missing)."""
    title = clean_title(title)
    others = list({m.pk: m for m in members if m.pk != owner.pk}.values())
    if any(not m.is_active for m in others):
        raise ValidationError("One of those accounts is not available.", code="inactive")
    _refuse_blockers(owner, others)
    _check_room_size(1, len(others))
    with transaction.atomic():
        room = Room.objects.create(kind=Room.Kind.GROUP, title=title, owner=owner)
        Membership.objects.bulk_create(
            [Membership(room=room, user=owner)] + [Membership(room=room, user=m) for m in others]
        )
        room = _lock_room(room.pk)
        _system_message(room, f"{owner.name} created the group “{title}”", actor=owner)
        if others:
            _system_message(room, f"{owner.name} added {_names(others)}", actor=owner)
            _announce(signals.members_changed, room=room, added=others, removed=[])
    return room


def _refuse_blockers(actor: User, users: list[User]) -> None:
    """Nobody is put in a group by someone they blocked."""
    refusing = [u for u in users if has_blocked(u.pk, actor.pk)]
    if refusing:
        raise ValidationError(f"{_names(refusing)} can't be added to this group.", code="blocked")


def _require_admin(actor: User, room: Room) -> None:
    if not can_administer(actor, room):
        raise PermissionDenied("Only the group's owner and admins can do that.")


def _require_owner(actor: User, room: Room) -> None:
    if not is_owner(actor, room):
        raise PermissionDenied("Only the group's owner can do that.")


def do_rename_room(actor: User, room: Room, title: str) -> Room:
    _require_admin(actor, room)
    title = clean_title(title)
    with transaction.atomic():
        room = _lock_room(room.pk)
        if room.title == title:
            return room
        room.title = title
        room.save(update_fields=["title"])
        _system_message(room, f"{actor.name} renamed the group to “{title}”", actor=actor)
    return room


def do_add_members(actor: User, room: Room, users: Iterable[User]) -> list[User]:
    """Add people to the group; those already in it are skipped. Returns who was added."""
    _require_admin(actor, room)
    with transaction.atomic():
        room = _lock_room(room.pk)
        present = set(Membership.objects.filter(room=room).values_list("user_id", flat=True))
        new = list({u.pk: u for u in users if u.pk not in present}.values())
        if any(not u.is_active for u in new):
            raise ValidationError("One of those accounts is not available.", code="inactive")
        _refuse_blockers(actor, new)
        if not new:
            return []
        _check_room_size(len(present), len(new))
        # New members start with the room's history read up to now.
        Membership.objects.bulk_create(
            [Membership(room=room, user=u, last_read_seq=room.last_seq) for u in new]
        )
        _system_message(room, f"{actor.name} added {_names(new)}", actor=actor)
        _announce(signals.members_changed, room=room, added=new, removed=[])
    return new


def do_remove_member(actor: User, room: Room, user: User) -> None:
    """The owner removes anyone, an admin removes ordinary members; they lose access to
    the room at once."""
    _require_admin(actor, room)
    if user.pk == actor.pk:
        raise ValidationError("To leave the group, use Leave.", code="self")
    with transaction.atomic():
        room = _lock_room(room.pk)
        target = Membership.objects.filter(room=room, user=user).first()
        if target is None:
            raise ValidationError(f"{user.name} is not in this group.", code="not_member")
        if not can_remove_member(actor, room, target):
            raise PermissionDenied("Only the owner can remove the owner or an admin.")
        target.delete()
        _revoke_links_of(room, user)
        _system_message(room, f"{actor.name} removed {user.name}", actor=actor)
        _announce(signals.members_changed, room=room, added=[], removed=[user])


def _hand_over_or_archive(room: Room, departed: User) -> None:
    """After someone left a group: an owner's group goes to the longest-standing member;
    a group left empty is archived."""
    if room.owner_id == departed.pk:
        successor = (
            Membership.objects.filter(room=room).select_related("user").order_by("joined_at", "pk").first()
        )
        if successor is None:
            room.owner = None
            room.archived_at = timezone.now()
            room.save(update_fields=["owner", "archived_at"])
        else:
            room.owner = successor.user
            room.save(update_fields=["owner"])
            _system_message(room, f"{successor.user.name} is now the owner")
    elif not Membership.objects.filter(room=room).exists():
        room.archived_at = timezone.now()
        room.save(update_fields=["archived_at"])


def do_remove_member_as_moderator(room: Room, user: User) -> bool:
    """A moderator takes someone out of a group (the moderation service audits it)."""
    if not room.is_group:
        raise ValidationError(
            "Only groups have members to remove; suspend the account instead.", code="direct"
        )
    with transaction.atomic():
        room = _lock_room(room.pk)
        deleted, _ = Membership.objects.filter(room=room, user=user).delete()
        if not deleted:
            return False
        _revoke_links_of(room, user)
        _system_message(room, f"{user.name} was removed by a moderator")
        _hand_over_or_archive(room, user)
        _announce(signals.members_changed, room=room, added=[], removed=[user])
    return True


def _revoke_links_of(room: Room, user: User) -> None:
    """Someone removed from a group does not keep a way back in through their own links."""
    Invite.objects.filter(room=room, created_by=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def do_set_admin(actor: User, room: Room, user: User, admin: bool) -> None:
    """The owner makes a member an admin, or an admin a member again."""
    _require_owner(actor, room)
    role = Membership.Role.ADMIN if admin else Membership.Role.MEMBER
    with transaction.atomic():
        room = _lock_room(room.pk)
        target = Membership.objects.filter(room=room, user=user).first()
        if target is None:
            raise ValidationError(f"{user.name} is not in this group.", code="not_member")
        if user.pk == room.owner_id or target.role == role:
            return
        target.role = role
        target.save(update_fields=["role"])
        text = (
            f"{actor.name} made {user.name} an admin"
            if admin
            else f"{actor.name} removed {user.name} as admin"
        )
        _system_message(room, text, actor=actor)


def do_set_members_can_invite(actor: User, room: Room, allowed: bool) -> None:
    """The owner decides whether every member may create invite links."""
    _require_owner(actor, room)
    with transaction.atomic():
        room = _lock_room(room.pk)
        if room.members_can_invite == allowed:
            return
        room.members_can_invite = allowed
        room.save(update_fields=["members_can_invite"])
        text = (
            f"{actor.name} let every member invite people"
            if allowed
            else f"{actor.name} made invite links owner and admins only"
        )
        _system_message(room, text, actor=actor)


def do_leave_room(membership: Membership) -> None:
    """Leave a group. An owner who leaves hands the group to the longest-standing member;
    the last one out archives it."""
    room = membership.room
    user = membership.user
    if not room.is_group:
        raise ValidationError("You can't leave a direct conversation.", code="direct")
    with transaction.atomic():
        room = _lock_room(room.pk)
        Membership.objects.filter(pk=membership.pk).delete()
        _system_message(room, f"{user.name} left")
        _hand_over_or_archive(room, user)
        _announce(signals.members_changed, room=room, added=[], removed=[user])


def do_transfer_ownership(actor: User, room: Room, new_owner: User) -> None:
    _require_owner(actor, room)
    with transaction.atomic():
        room = _lock_room(room.pk)
        if not Membership.objects.filter(room=room, user=new_owner).exists():
            raise ValidationError(f"{new_owner.name} is not in this group.", code="not_member")
        if new_owner.pk == actor.pk:
            return
        room.owner = new_owner
        room.save(update_fields=["owner"])
        _system_message(room, f"{actor.name} made {new_owner.name} the owner", actor=actor)

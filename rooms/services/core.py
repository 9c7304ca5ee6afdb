"""What every room service shares: the room lock, sequence numbers, storing a message,
system messages, and announcing after commit."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from rooms import hooks, live, system_events
from rooms.models import Membership, Message, Room


def announce_on_commit(announce: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Call `announce` (a `rooms.live` function) once the transaction commits, never if it
    rolls back: pages are told only what the database holds."""
    transaction.on_commit(functools.partial(announce, *args, **kwargs))


def member_usernames(room: Room) -> dict[str, int]:
    return {
        username.lower(): user_id
        for user_id, username in Membership.objects.filter(room=room).values_list("user_id", "user__username")
    }


def append_message(
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
    image: File[Any] | str | None = None,
    file: str | None = None,
    file_name: str = "",
    file_size: int | None = None,
    file_type: str = "",
    event: str = "",
    event_params: dict[str, Any] | None = None,
    announce: bool = True,
) -> Message:
    """Give the message the room's next sequence number and store it (and, after commit,
    announce it, unless the caller will with `rooms.live.announce_message`).

    Must run inside a transaction that holds the room's row lock (see `lock_room`), so
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
        file=file,
        file_name=file_name,
        file_size=file_size,
        file_type=file_type,
        event=event,
        event_params=event_params or {},
    )
    Room.objects.filter(pk=room.pk).update(last_seq=seq, last_message=message, last_activity_at=now)
    room.last_seq, room.last_message, room.last_activity_at = seq, message, now
    read_by = read_by or author
    if read_by is not None:
        # My own message, or the system message about what I just did, is read by me.
        Membership.objects.filter(room=room, user=read_by).update(
            last_read_seq=Greatest(F("last_read_seq"), seq)
        )
    hooks.message_appended(message, read_by.pk if read_by is not None else None)
    if announce:
        announce_on_commit(live.announce_message, message)
    return message


def lock_room(room_id: int) -> Room:
    # FOR UPDATE serializes writers per room on PostgreSQL; SQLite runs transactions
    # in IMMEDIATE mode (settings), which serializes all writers.
    return Room.objects.select_for_update().get(pk=room_id)


def lock_room_as_member(room_id: int, user: User) -> Membership | None:
    """The person's membership of the room with the room locked and read under the lock,
    in one query; None when they are not a member (never were, removed, a declined request,
    an archived room), as `rooms.access.access_membership` decides. A post's only access
    check: made at the lock, a member removed a moment before is refused."""
    membership = (
        Membership.objects.select_related("room")
        .select_for_update(of=("room",))
        .filter(room_id=room_id, user=user, room__archived_at__isnull=True)
        .exclude(request=Membership.Request.DECLINED)
        .first()
    )
    if membership is not None:
        membership.user = user
    return membership


def system_message(room: Room, event: str, *, actor: User | None = None, **params: Any) -> Message:
    """Tell the room what happened: `event` is one of rooms.system_events.EVENTS, `params`
    its names and titles (a list of names for a list). Each reader sees it in their
    language; the body keeps the default language's text."""
    if actor is not None:
        params = {"actor": actor.name, **params}
    message = append_message(
        room,
        author=None,
        kind=Message.Kind.SYSTEM,
        body=system_events.render_default(event, params),
        read_by=actor,
        event=event,
        event_params=params,
    )
    return message


def do_post_system_message(room_id: int, event: str, *, actor: User | None = None, **params: Any) -> Message:
    """Tell the room what happened ("alice renamed the assistant to Planner")."""
    with transaction.atomic():
        return system_message(lock_room(room_id), event, actor=actor, **params)


def check_room_size(current: int, adding: int, *, encrypted: bool = False) -> None:
    limit = settings.ROOM_MAX_MEMBERS
    if encrypted:
        # Every member's every browser is a member of the MLS group (docs/e2ee.md).
        limit = min(limit, settings.E2EE_MAX_MEMBERS)
        if current + adding > limit:
            raise ValidationError(
                _("An encrypted group has at most %(limit)s members; this would make %(count)s.")
                % {"limit": limit, "count": current + adding},
                code="too_many_members",
            )
    if current + adding > limit:
        raise ValidationError(
            _("A group has at most %(limit)s members; this would make %(count)s.")
            % {"limit": limit, "count": current + adding},
            code="too_many_members",
        )

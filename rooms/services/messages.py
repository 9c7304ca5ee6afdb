"""Posting, editing and deleting messages, the assistant's messages, and read positions.

`do_post_message` is the story of a post: every consequence of sending a message is in
that one function, in the order it happens."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Greatest, Least
from django.http import Http404
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import has_blocked
from calpico.text import visible_characters
from rooms import hooks, live, ratelimits
from rooms.access import can_change_message, can_delete_message
from rooms.attachments import FileAttachment, PendingAttachment
from rooms.markdown import render_message, rendered_text
from rooms.models import Membership, Message, Room
from rooms.services import search
from rooms.services.core import (
    announce_on_commit,
    append_message,
    lock_room,
    lock_room_as_member,
    member_usernames,
)


@dataclass(frozen=True)
class PostResult:
    message: Message
    created: bool


def clean_message_body(body: str, *, allow_empty: bool = False) -> str:
    """The text as it will be stored, or ValidationError with a message for the sender."""
    body = (body or "").replace("\r\n", "\n").strip()
    if not body and not allow_empty:
        raise ValidationError(_("Type a message first."), code="empty")
    if body and not visible_characters(body):
        if allow_empty:
            return ""
        raise ValidationError(
            "That message has only invisible characters; type something people can see.",
            code="invisible",
        )
    limit = settings.MESSAGE_MAX_LENGTH
    if len(body) > limit:
        raise ValidationError(
            _("Messages are at most %(limit)s characters; this one has %(length)s.")
            % {
                "limit": number_format(limit, force_grouping=True),
                "length": number_format(len(body), force_grouping=True),
            },
            code="too_long",
        )
    return body


# An MLS message (RFC 9420, 6): version mls10 (1), then wire format mls_private_message (2).
MLS_PRIVATE_MESSAGE_PREFIX = b"\x00\x01\x00\x02"
# Base64 of an MLS private message carrying MESSAGE_MAX_LENGTH characters of UTF-8 (up to
# 4 bytes each), with room for its header, padding and tag.
CIPHERTEXT_MAX_LENGTH = 4 * (settings.MESSAGE_MAX_LENGTH * 4 + 1024) // 3


def clean_ciphertext(body: str) -> str:
    """An encrypted room's message: base64 of an MLS private message, nothing else. The
    server cannot check what is inside, only that it is not plain text."""
    body = (body or "").strip()
    refused = ValidationError(
        _(
            "This conversation is end-to-end encrypted: the server accepts only messages "
            "encrypted by your browser. Reload the page and try again."
        ),
        code="not_encrypted",
    )
    if not body or len(body) > CIPHERTEXT_MAX_LENGTH:
        raise refused
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise refused from None
    if len(raw) < 32 or not raw.startswith(MLS_PRIVATE_MESSAGE_PREFIX):
        raise refused
    return body


def _shows_something(html: str) -> bool:
    """Whether a rendered message draws any text. Markup around nothing
    ("[](https://x.example)", "**\u200b**") would show an empty message: what counts is the
    text as it is drawn, checked on the rendering the message is stored with."""
    return bool(visible_characters(rendered_text(html)))


SHOWS_NOTHING = (
    "That message would show nothing: its formatting has no text inside. Type something people can see."
)


def _file_bytes(file: File[Any]) -> bytes:
    file.seek(0)
    try:
        data: bytes = file.read()
        return data
    finally:
        file.seek(0)


def _content_key(body: str, image: File[Any] | None, file: FileAttachment | None) -> str:
    if file is not None:
        return body + "\0" + file.name + "\0" + file.sha256
    if image is None:
        return body
    return body + "\0" + hashlib.sha256(_file_bytes(image)).hexdigest()


def _stored_sha256(field: Any) -> str:
    digest = hashlib.sha256()
    with field.open("rb") as stored:
        for chunk in stored.chunks():
            digest.update(chunk)
    return digest.hexdigest()


def _is_resend(message: Message, body: str, image: File[Any] | None, file: FileAttachment | None) -> bool:
    """Whether `message` holds what this send would store: the same text and the same
    image (attachments are re-encoded the same way every time) or file, or neither."""
    if (
        message.body != body
        or bool(message.image) != (image is not None)
        or bool(message.file) != (file is not None)
    ):
        return False
    try:
        if file is not None:
            return (
                message.file_name == file.name
                and message.file_size == file.size
                and _stored_sha256(message.file) == file.sha256
            )
        if image is None:
            return True
        with message.image.open("rb") as stored:
            same: bool = stored.read() == _file_bytes(image)
            return same
    except OSError:  # the stored file is gone: nothing to compare with, so not the same
        return False


def do_post_message(
    membership: Membership,
    body: str,
    *,
    client_id: uuid.UUID | None = None,
    reply_to_id: int | None = None,
    image: File[Any] | None = None,
    file: FileAttachment | None = None,
) -> PostResult:
    """Post a message as the member, with an optional image (from `rooms.attachments.make_attachment`)
    or other file (`rooms.attachments.file_attachment`), not both.
    Sending the same content again with the same client_id stores nothing new and returns
    the first message; other content with a used client_id is a new message.

    Raises ValidationError for empty or over-long text, a reply to a message that is not
    in this room, or too many bytes of files today. Text may be empty when there is an
    image or a file. PermissionDenied: no longer a member.
    """
    return _post(
        membership.user,
        membership.room_id,
        body,
        client_id=client_id,
        reply_to_id=reply_to_id,
        image=image,
        file=file,
        outsider=PermissionDenied(_("You are no longer a member of this room.")),
    )


def do_post_message_as(
    author: User,
    room_id: int,
    body: str,
    *,
    client_id: uuid.UUID | None = None,
    reply_to_id: int | None = None,
    image: File[Any] | None = None,
    file: FileAttachment | None = None,
) -> PostResult:
    """`do_post_message` for a person whose membership nobody checked yet (the composer's
    view): the check is made once, at the room's lock, and anyone who is not a member gets
    Http404 ("No such room."), as `rooms.access.access_membership` answers; a resend of a
    message they sent while a member too (the room and its message as they are now, its
    reactions, the quote of an edited original, are no longer theirs to see)."""
    return _post(
        author,
        room_id,
        body,
        client_id=client_id,
        reply_to_id=reply_to_id,
        image=image,
        file=file,
        outsider=Http404(_("No such room.")),
        answer_resends_of_outsiders=False,
    )


def _post(
    author: User,
    room_id: int,
    body: str,
    *,
    client_id: uuid.UUID | None,
    reply_to_id: int | None,
    image: File[Any] | None,
    file: FileAttachment | None,
    outsider: Exception,
    answer_resends_of_outsiders: bool = True,
) -> PostResult:
    if image is not None and file is not None:
        raise ValueError("A message carries an image or a file, not both.")
    # The image's or file's bytes are saved first and removed again if the post does not go
    # through. With one the post must be its own transaction (durable: a caller's atomic
    # block is refused), since a caller's rollback after this block would leave it behind.
    if file is not None:
        attachment = PendingAttachment(file.content, field="file")
    else:
        attachment = PendingAttachment(image)
    with attachment, transaction.atomic(durable=attachment.content is not None):
        membership = lock_room_as_member(room_id, author)
        if membership is None:
            # A retry of a post that went through before the person left the room (after the
            # caller checked their membership) is answered with that message.
            if answer_resends_of_outsiders:
                sent = _sent_before(room_id, author, body, client_id, image, file)
                if sent is not None:
                    return PostResult(sent, created=False)
            raise outsider
        room = membership.room
        request = membership.request
        encrypted = room.encrypted
        if encrypted:
            # Ciphertext only (docs/e2ee.md); files are not encrypted yet, so not sent here.
            if image is not None or file is not None:
                raise ValidationError(
                    _("Files can't be sent in an encrypted conversation yet."), code="encrypted_file"
                )
            body = clean_ciphertext(body)
        else:
            body = clean_message_body(body, allow_empty=image is not None or file is not None)
        if client_id is not None:
            existing = Message.objects.filter(room=room, author=author, client_id=client_id).first()
            if existing is not None and not _is_resend(existing, body, image, file):
                # Other content under a used id: a page the browser brought back (Back
                # button, restored form) still holds the id of a message it sent. This is a
                # new message, under an id made from both, so sending it again is still one.
                client_id = uuid.uuid5(client_id, _content_key(body, image, file))
                existing = Message.objects.filter(room=room, author=author, client_id=client_id).first()
            if existing is not None:
                return PostResult(existing, created=False)
        # How far I had read before this post, as the request found it (for read receipts).
        read_before = membership.last_read_seq
        refusal = send_refusal(room, author)
        if refusal:
            raise ValidationError(refusal, code="blocked")
        # Replying to a message request accepts it.
        if request == Membership.Request.PENDING:
            Membership.objects.filter(room=room, user=author).update(request=Membership.Request.NONE)
            announce_on_commit(live.announce_members_changed, room, added=[author])
        ratelimits.hit(ratelimits.messages_burst(), author.pk)
        ratelimits.hit(ratelimits.messages_sustained(), author.pk)
        if attachment.content is not None:
            size = file.size if file is not None else (image.size if image is not None else 0)
            ratelimits.hit(ratelimits.attachment_bytes(), author.pk, amount=size)
        reply_to = None
        if reply_to_id is not None:
            reply_to = Message.objects.filter(pk=reply_to_id, room=room).first()
            if reply_to is None:
                raise ValidationError(_("The message you replied to is not in this room."), code="reply_to")
        # Only text with an "@" can mention anyone: skip loading the member list otherwise.
        # Ciphertext is not rendered: the members' browsers decrypt and show it.
        rendered = render_message(
            body if not encrypted else "", member_usernames(room) if "@" in body else {}
        )
        if body and not encrypted and not _shows_something(rendered.html):
            if attachment.content is None:
                raise ValidationError(SHOWS_NOTHING, code="shows_nothing")
            body, rendered = "", render_message("", {})
        message = append_message(
            room,
            author=author,
            kind=Message.Kind.ENCRYPTED if encrypted else Message.Kind.TEXT,
            body=body,
            html=rendered.html,
            mentioned_user_ids=[uid for uid in rendered.mentioned_user_ids if uid != author.pk],
            reply_to=reply_to,
            client_id=client_id,
            image=attachment.name if file is None else None,
            file=attachment.name if file is not None else None,
            file_name=file.name if file is not None else "",
            file_size=file.size if file is not None else None,
            file_type=file.file_type if file is not None else "",
            announce=False,
        )
        attachment.taken()
        # Searchable when it commits, not before, and never without the message.
        search.index_message(message, new=True)
        # After commit, first of all: what the hooks start (the assistant sends the model
        # its request: the answer is on its way while the room is told). They show nothing.
        starts: list[Callable[[], None]] = []
        transaction.on_commit(functools.partial(_start_all, starts))
        # Then the room sees the message.
        announce_on_commit(live.announce_message, message)
        # Posting reads the room up to my message: if I had not read to the end, that may be
        # a "Seen" for someone, if I share read receipts (asked after commit, not holding the
        # lock). Answering a message request shows how far I had read it in silence.
        if request == Membership.Request.PENDING:
            read_before = 0
        if read_before < message.seq - 1 and author.read_receipts and not room.is_private:
            announce_read_on_commit(room.pk, author.pk, read_before, message.seq)
        # The assistant records a run here, with the message or not at all (rooms.hooks);
        # whatever it announces comes after the message above.
        after_commit = hooks.message_stored(message, membership)
        starts.extend(after.start for after in after_commit if after.start is not None)
        # Last: what the hooks show in answer (the assistant's reply, "thinking").
        for after in after_commit:
            if after.after_shown is not None:
                transaction.on_commit(after.after_shown)
    return PostResult(message, created=True)


def _sent_before(
    room_id: int,
    author: User,
    body: str,
    client_id: uuid.UUID | None,
    image: File[Any] | None,
    file: FileAttachment | None,
) -> Message | None:
    """The message this send repeats (the same client_id and content, as `_post` decides),
    or None."""
    if client_id is None:
        return None
    existing = Message.objects.filter(room_id=room_id, author=author, client_id=client_id).first()
    if existing is None:
        return None
    try:
        if existing.is_encrypted:
            body = clean_ciphertext(body)
        else:
            body = clean_message_body(body, allow_empty=image is not None or file is not None)
    except ValidationError:
        return None
    if _is_resend(existing, body, image, file):
        return existing
    again = uuid.uuid5(client_id, _content_key(body, image, file))
    return Message.objects.filter(room_id=room_id, author=author, client_id=again).first()


def _start_all(starts: list[Callable[[], None]]) -> None:
    for start in starts:
        start()


def do_post_assistant_message(
    room_id: int,
    *,
    persona: str,
    body: str = "",
    state: str = Message.State.STREAMING,
    note: str = "",
    reply_to: Message | None = None,
    announce: bool = True,
) -> Message:
    """Add the assistant's message to the room: streaming while a reply is being written
    ("thinking" until its first words), or finished at once (a refusal saying why it
    cannot answer). `announce=False`: the caller shows it to the room itself
    (`rooms.live.announce_message`), after this commits."""
    with transaction.atomic():
        message = append_message(
            lock_room(room_id),
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
        search.index_message(message, new=True)
        return message


def do_update_assistant_message(
    message: Message,
    *,
    body: str,
    state: str,
    note: str = "",
    persona: str | None = None,
    image: File[Any] | None = None,
    announce: bool = True,
) -> Message:
    """Store the assistant message's text (final or as far as it got), its state and the
    note saying why it stopped, and show it to the room (unless `announce=False`: the
    caller does, after this commits)."""
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
        # The reply as it ends (or restarts, emptied) is what search finds; the text so far
        # while it streams (assistant.runs.save_progress) is not indexed.
        search.index_message(message)
        if announce:
            announce_on_commit(live.announce_message_changed, message)
    return message


def do_edit_message(user: User, message: Message, body: str) -> Message:
    """Replace the text of the user's own message; it then shows as edited."""
    if not can_change_message(user, message):
        raise PermissionDenied(_("You can only edit your own messages."))
    if message.is_encrypted:
        raise ValidationError(_("Encrypted messages can't be edited yet."), code="encrypted")
    body = clean_message_body(body)
    refusal = send_refusal(message.room, user)
    if refusal:
        raise ValidationError(refusal, code="blocked")
    with transaction.atomic():
        rendered = render_message(body, member_usernames(message.room))
        if not _shows_something(rendered.html):
            raise ValidationError(SHOWS_NOTHING, code="shows_nothing")
        changes = {
            "body": body,
            "html": rendered.html,
            "mentioned_user_ids": [uid for uid in rendered.mentioned_user_ids if uid != user.pk],
            "edited_at": timezone.now(),
        }
        # Only while it still exists: a delete that committed since the message was read
        # (another tab, an admin, a moderator) wins, and its text stays gone.
        if not Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(**changes):
            raise ValidationError(_("This message was deleted meanwhile."), code="deleted")
        for name, value in changes.items():
            setattr(message, name, value)
        search.index_message(message)
        announce_on_commit(live.announce_message_changed, message)
    return message


def do_delete_message(user: User, message: Message, *, membership: Membership | None = None) -> Message:
    """Delete a message: the author's own ("message deleted") or, for a group's owner and
    admins, anyone's ("removed by an admin")."""
    if not can_delete_message(user, message, membership):
        raise PermissionDenied(_("You can only delete your own messages."))
    removed_by = "" if message.author_id == user.pk else "admin"
    return _remove_message(message, removed_by=removed_by)


def do_remove_message_as_moderator(message: Message) -> Message:
    """A moderator's removal: everyone sees "removed by a moderator". The caller (the
    moderation service) checks the moderator and writes the audit entry."""
    return _remove_message(message, removed_by="moderator")


def _remove_message(message: Message, *, removed_by: str) -> Message:
    with transaction.atomic():
        stored = [(field.storage, field.name) for field in (message.image, message.file) if field]
        message.body = ""
        message.html = ""
        message.mentioned_user_ids = []
        message.image = None
        message.file = None
        message.file_name = ""
        message.file_size = None
        message.file_type = ""
        message.removed_by = removed_by
        message.deleted_at = timezone.now()
        message.save(
            update_fields=[
                "body",
                "html",
                "mentioned_user_ids",
                "image",
                "file",
                "file_name",
                "file_size",
                "file_type",
                "removed_by",
                "deleted_at",
            ]
        )
        search.index_message(message)  # leaves the index
        hooks.message_removed(message)  # and the assistant's summary of the room
        announce_on_commit(live.announce_message_changed, message)
        for storage, name in stored:
            # A deleted message's picture or file is gone too, once the delete is sure to stand.
            transaction.on_commit(functools.partial(storage.delete, name))
    return message


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


# Read positions. How far a member has read is theirs to share: with read receipts on
# (User.read_receipts) the room's pages are told when it passes a message someone else wrote,
# which is what "Seen" under that message is drawn from (docs/protocol.md, `seen`); off, it
# is never announced. A move over my own or the assistant's messages changes no one's "Seen"
# and is not announced either.


def tells_room_reads(membership: Membership) -> bool:
    """Whether this member's read position is announced to their room: they share read
    receipts, they are in the room (not a message request they have not answered: its
    sender must not learn it was opened) and someone else is there to see it."""
    return (
        membership.user.read_receipts
        and membership.request == Membership.Request.NONE
        and not membership.room.is_private
    )


def passes_someone_elses_message(
    room_id: int, reader_id: int, old: int, new: int, shown: Sequence[Message] = ()
) -> bool:
    """Whether a read position moving from `old` to `new` passes a message a person other than
    the reader wrote. `shown`, messages in seq order the caller has loaded already (the room
    page's), answer it without a query when they cover the move."""
    for message in shown:
        if old < message.seq <= new and _written_by_someone_else(message, reader_id):
            return True
    if shown and shown[0].seq <= old + 1 and shown[-1].seq >= new:
        return False
    return (
        Message.objects.filter(room_id=room_id, seq__gt=old, seq__lte=new, kind=Message.Kind.TEXT)
        .exclude(author=None)
        .exclude(author_id=reader_id)
        .exists()
    )


def _written_by_someone_else(message: Message, reader_id: int) -> bool:
    return message.kind == Message.Kind.TEXT and message.author_id not in (None, reader_id)


def do_mark_read(membership: Membership, seq: int, *, shown: Sequence[Message] = ()) -> None:
    """Everything up to `seq` (at most the room's last message) is read; the read position
    never moves backwards. When it passes a message someone else wrote and the member shares
    read receipts, the room is told after commit. `shown`: the messages the member is being
    shown, in seq order (see `passes_someone_elses_message`). `membership` comes with its room
    and user."""
    old = membership.last_read_seq
    if seq <= old:
        return  # nothing new: no write, nothing to tell
    room = membership.room
    room_last_seq = Subquery(Room.objects.filter(pk=OuterRef("room_id")).values("last_seq")[:1])
    Membership.objects.filter(pk=membership.pk).update(
        last_read_seq=Greatest(F("last_read_seq"), Least(Value(seq), room_last_seq))
    )
    new = min(seq, room.last_seq)
    membership.last_read_seq = max(old, new)
    if new > old and tells_room_reads(membership):
        announce_read_on_commit(room.pk, membership.user_id, old, new, shown)


def announce_read_on_commit(
    room_id: int, reader_id: int, old: int, new: int, shown: Sequence[Message] = ()
) -> None:
    """After commit: the reader's position moved from `old` to `new` (as far as others can
    know); the room is told if that passes a message someone else wrote, the only move that
    changes a "Seen". The caller has checked that the reader shares read receipts."""

    def announce() -> None:
        if passes_someone_elses_message(room_id, reader_id, old, new, shown):
            live.announce_read_position(room_id, reader_id, new)

    transaction.on_commit(announce)


def do_mark_read_in_rooms(user_id: int, reads: dict[int, int]) -> None:
    """A page's read positions, several rooms at once (`room id: seq`); rooms the user is
    not in are left alone."""
    memberships = Membership.objects.filter(user_id=user_id, room_id__in=list(reads)).select_related(
        "room", "user"
    )
    for membership in memberships:
        do_mark_read(membership, reads[membership.room_id])


def do_set_read_receipts(user: User, enabled: bool) -> None:
    """Share how far I have read, or not. Off, no page is shown my read position and I am shown
    no one's, as Signal does; the rooms I am in are told at once (pages forget my position, or
    are given it again), and so are my own pages."""
    with transaction.atomic():
        user.read_receipts = enabled
        user.save(update_fields=["read_receipts"])
        positions = dict(
            Membership.objects.filter(user=user, request=Membership.Request.NONE)
            .exclude(room__kind=Room.Kind.PRIVATE)
            .exclude(room__archived_at__isnull=False)
            .values_list("room_id", "last_read_seq")
        )
        announce_on_commit(live.announce_read_receipts, user.pk, enabled, positions)


def do_set_muted(membership: Membership, muted: bool) -> None:
    """Mute or unmute a room for one member: no toasts or desktop notifications but for
    mentions of them."""
    membership.muted = muted
    membership.save(update_fields=["muted"])
    announce_on_commit(live.announce_membership_updated, membership)

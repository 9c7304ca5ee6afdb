"""Reactions: a member's emoji on a message, taken back by giving it again, and the
assistant's.

Each change locks the message's row, so two people adding the 20th and 21st emoji at once
cannot both get in, and a page is sent the chips as this change left them
(`rooms.live.announce_reactions`): a page keeps the newest it was sent
(`Message.reactions_version`). Reactions never notify, but for a quiet toast to the author
of a message in a direct room (decided by each page's consumer).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import User
from rooms import emoji as emoji_data
from rooms import live, ratelimits
from rooms.models import Membership, Message, Reaction, reaction_chips
from rooms.services.core import announce_on_commit
from rooms.services.messages import send_refusal

# Distinct emoji on one message, as Slack and Discord cap them: a row of chips stays a row.
MAX_EMOJI_PER_MESSAGE = 20


@dataclass(frozen=True)
class ReactionResult:
    """The message with its chips as this change left them, and whether the emoji is now on it."""

    message: Message
    added: bool


def clean_emoji(value: object) -> str:
    """The emoji as stored, or ValidationError: only emoji of the vendored data set."""
    found = emoji_data.canonical(value)
    if found is None:
        raise ValidationError(gettext("Choose an emoji from the picker."), code="unknown_emoji")
    return found


def do_toggle_reaction(membership: Membership, message: Message, emoji: str) -> ReactionResult:
    """Add the member's `emoji` to the message, or take it back if they had given it.

    Raises PermissionDenied for a message outside the member's room or a member who has left,
    and ValidationError, with words for the person, for an emoji not in the data set, a
    deleted or system message, a 21st distinct emoji, a direct conversation where either
    person blocked the other, a message request not yet accepted, or too many reactions in
    a short time.
    """
    user = membership.user
    if message.room_id != membership.room_id:
        raise PermissionDenied(gettext("That message is not in this room."))
    emoji = clean_emoji(emoji)
    with transaction.atomic():
        message = _lock_message(message.pk)
        request = (
            Membership.objects.filter(room_id=message.room_id, user=user)
            .values_list("request", flat=True)
            .first()
        )
        if request is None or request == Membership.Request.DECLINED:
            raise PermissionDenied(gettext("You are no longer a member of this room."))
        if request == Membership.Request.PENDING:
            raise ValidationError(gettext("Accept the message request to react."), code="request")
        _check_reactable(message)
        if send_refusal(message.room, user):
            # A direct conversation where either person blocked the other; as neutral as
            # the composer's refusal, so it does not say who blocked whom.
            raise ValidationError(gettext("You can't react in this conversation."), code="blocked")
        ratelimits.hit(ratelimits.reactions_burst(), user.pk)
        ratelimits.hit(ratelimits.reactions_sustained(), user.pk)
        removed, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
        if not removed:
            _check_room_for(message, emoji)
            Reaction.objects.create(message=message, user=user, emoji=emoji)
        _changed(message, actor=user, emoji=emoji, added=not removed)
    return ReactionResult(message, added=not removed)


def do_add_assistant_reaction(
    message: Message, emoji: str, *, persona: str, reason: str = ""
) -> ReactionResult:
    """The room's assistant (named `persona`, as on its messages) reacts with `emoji`, for
    `reason` (its decision's, shown on the chip); giving one it already gave changes nothing.
    Its reactions count toward the 20 emoji and are shown like a member's; they never
    notify. ValidationError as for a member's reaction."""
    emoji = clean_emoji(emoji)
    with transaction.atomic():
        message = _lock_message(message.pk)
        _check_reactable(message)
        if Reaction.objects.filter(message=message, is_assistant=True, emoji=emoji).exists():
            return ReactionResult(message, added=False)
        _check_room_for(message, emoji)
        Reaction.objects.create(
            message=message, is_assistant=True, persona=persona[:40], reason=reason[:300], emoji=emoji
        )
        _changed(message, actor=None, emoji=emoji, added=True)
    return ReactionResult(message, added=True)


def do_remove_assistant_reaction(message: Message, emoji: str) -> ReactionResult:
    """Take back the assistant's `emoji` from the message, if it gave it."""
    emoji = clean_emoji(emoji)
    with transaction.atomic():
        message = _lock_message(message.pk)
        removed, _ = Reaction.objects.filter(message=message, is_assistant=True, emoji=emoji).delete()
        if removed:
            _changed(message, actor=None, emoji=emoji, added=False)
    return ReactionResult(message, added=False)


def _lock_message(message_id: int) -> Message:
    # FOR UPDATE (SQLite: the IMMEDIATE transaction) serializes the changes to one message's
    # reactions: the 20-emoji cap holds, and each change reads the chips it leaves.
    return Message.objects.select_for_update(of=("self",)).select_related("room", "author").get(pk=message_id)


def _check_reactable(message: Message) -> None:
    if message.is_deleted:
        raise ValidationError(gettext("This message was deleted."), code="deleted")
    if message.is_system:
        raise ValidationError(gettext("System messages take no reactions."), code="system")


def _check_room_for(message: Message, emoji: str) -> None:
    present = set(Reaction.objects.filter(message=message).values_list("emoji", flat=True).distinct())
    if emoji not in present and len(present) >= MAX_EMOJI_PER_MESSAGE:
        raise ValidationError(
            f"A message takes at most {MAX_EMOJI_PER_MESSAGE} different reactions; "
            "add yours to one that is already there.",
            code="too_many_emoji",
        )


def _changed(message: Message, *, actor: User | None, emoji: str, added: bool) -> None:
    """Record when the reactions changed, read the chips as they now are (under the lock)
    and announce them after commit."""
    message.reactions_changed_at = timezone.now()
    Message.objects.filter(pk=message.pk).update(reactions_changed_at=message.reactions_changed_at)
    message.reaction_chips = reaction_chips(
        Reaction.objects.filter(message=message).select_related("user").order_by("created_at", "pk")
    )
    announce_on_commit(live.announce_reactions, message, actor=actor, emoji=emoji, added=added)

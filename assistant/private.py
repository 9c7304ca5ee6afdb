"""The assistant of one's own: memories, the private room, and sharing an answer from it.

Memories belong to one person and are read only in that person's private room
(`assistant/prompt.py`); nothing here reaches a shared room except an answer its owner
chooses to share, quoted with the question it answered.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from assistant.models import DEFAULT_NAME, AssistantRun, AssistantSettings, Memory, ReplyMode
from rooms.models import Membership, Message, Room
from rooms.services import PostResult, do_post_message

MEMORY_MAX_LENGTH = 500


def clean_memory(text: str) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise ValidationError(_("Write what to remember."), code="empty")
    if len(text) > MEMORY_MAX_LENGTH:
        raise ValidationError(
            _("A memory is at most %(limit)s characters.") % {"limit": MEMORY_MAX_LENGTH}, code="too_long"
        )
    return text


def do_add_memory(user: User, text: str) -> Memory:
    return Memory.objects.create(user=user, text=clean_memory(text))


def do_edit_memory(memory: Memory, text: str) -> Memory:
    memory.text = clean_memory(text)
    memory.updated_at = timezone.now()
    memory.save(update_fields=["text", "updated_at"])
    return memory


def do_delete_memory(memory: Memory) -> None:
    memory.delete()


def private_room_key(user: User) -> str:
    return f"assistant:{user.pk}"


def do_open_private_room(user: User) -> Room:
    """The user's own room with the assistant, made the first time it is needed."""
    room = Room.objects.filter(direct_key=private_room_key(user)).first()
    if room is not None:
        return room
    try:
        with transaction.atomic():
            room = Room.objects.create(
                kind=Room.Kind.PRIVATE, title="My assistant", owner=user, direct_key=private_room_key(user)
            )
            Membership.objects.create(room=room, user=user)
            AssistantSettings.objects.create(room=room, reply_mode=ReplyMode.ALWAYS, name=DEFAULT_NAME)
    except IntegrityError:
        room = Room.objects.get(direct_key=private_room_key(user))
    return room


# Sharing from the private room


def question_for(answer: Message) -> Message | None:
    """The person's message an answer in the private room replied to: the run's trigger."""
    run = AssistantRun.objects.filter(reply=answer).select_related("trigger").order_by("-id").first()
    if run is None or run.trigger is None or run.trigger.is_deleted:
        return None
    return run.trigger


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())


def do_share_answer(target: Membership, answer: Message, *, note: str = "") -> PostResult:
    """Post a question and its answer from the private room into another room, as the
    sharer's message quoting both. Nothing else from the private room goes with it."""
    question = question_for(answer)
    parts = [note.strip()] if note.strip() else []
    if question is not None and question.body:
        parts.append(_quoted(f"**Question:** {question.body}"))
    parts.append(_quoted(f"**{answer.sender_name} (AI):** {answer.body}"))
    body = "\n\n".join(parts)
    limit = settings.MESSAGE_MAX_LENGTH
    if len(body) > limit:
        raise ValidationError(
            f"That answer is too long to share: messages are at most {limit:,} characters.", code="too_long"
        )
    return do_post_message(target, body)

"""How another app takes part in what rooms does, without rooms importing it.

`rooms` must not import `assistant` (it depends on rooms, not the reverse), yet a message
that asks the assistant for something has to record that request in the same transaction
as the message, so the two commit together or not at all. The assistant registers one
function here at start-up (`AssistantConfig.ready`); the post service calls it. It also
adds what it knows of a reported assistant reply to the report's snapshot.

A hook runs inside the posting transaction while the room's row is locked: it may only
record work (insert rows, register `transaction.on_commit` callbacks to start it), never do
it. Reading history, building prompts and calling outside services happen after commit.
The post service registers the message's own announcement before calling the hooks, so
whatever they announce comes after it. A hook returns what else to call after commit
(`AfterCommit`): `start`, first of all, before the room is told of the message (it may
only begin work, such as sending the model its request, and must show nothing), and
`after_shown`, last (the assistant shows its reply's message).

`notifications` listens the same way, to every message stored (people's, the assistant's
and system messages), to people added to a group and to moderators' notices: inside the
transaction it only queues a durable job, which sends pushes and emails after commit.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rooms.models import Membership, Message, Notice, Room


@dataclass(frozen=True)
class AfterCommit:
    """What a hook has called after the post commits, besides its own on-commit callbacks."""

    start: Callable[[], None] | None = None
    after_shown: Callable[[], None] | None = None


MessageStored = Callable[[Message, Membership], AfterCommit | None]
ReportSnapshot = Callable[[Message, dict[str, Any]], None]
MessageAppended = Callable[[Message, int | None], None]
MembersAdded = Callable[[Room, int | None, list[int]], None]
NoticeCreated = Callable[[Notice], None]
MessageRemoved = Callable[[Message], None]

_message_stored: list[MessageStored] = []
_report_snapshot: list[ReportSnapshot] = []
_message_appended: list[MessageAppended] = []
_members_added: list[MembersAdded] = []
_notice_created: list[NoticeCreated] = []
_message_removed: list[MessageRemoved] = []


def on_message_stored(hook: MessageStored) -> None:
    """Register `hook(message, membership)`, called for every person's new message; it may
    return what to call after commit (`AfterCommit`)."""
    if hook not in _message_stored:
        _message_stored.append(hook)


def message_stored(message: Message, membership: Membership) -> list[AfterCommit]:
    """Called by the post service inside its transaction, after the message is stored."""
    return [after for hook in _message_stored if (after := hook(message, membership)) is not None]


def on_report_snapshot(hook: ReportSnapshot) -> None:
    """Register `hook(message, snapshot)`, which may add to the dict a report keeps of
    `message` (the assistant: the run that wrote a reply, and its prompt)."""
    if hook not in _report_snapshot:
        _report_snapshot.append(hook)


def report_snapshot(message: Message, snapshot: dict[str, Any]) -> None:
    """Called by the moderation service while it takes a report's snapshot."""
    for hook in _report_snapshot:
        hook(message, snapshot)


def on_message_appended(hook: MessageAppended) -> None:
    """Register `hook(message, actor_id)`, called for every message stored in a room, with
    whoever caused it (the author; for a system message, who acted; None: nobody)."""
    if hook not in _message_appended:
        _message_appended.append(hook)


def message_appended(message: Message, actor_id: int | None) -> None:
    """Called by `rooms.services.core.append_message` inside its transaction."""
    for hook in _message_appended:
        hook(message, actor_id)


def on_members_added(hook: MembersAdded) -> None:
    """Register `hook(room, actor_id, user_ids)`: someone added these people to a group."""
    if hook not in _members_added:
        _members_added.append(hook)


def members_added(room: Room, actor_id: int | None, user_ids: list[int]) -> None:
    """Called by the group services inside their transaction."""
    for hook in _members_added:
        hook(room, actor_id, user_ids)


def on_notice_created(hook: NoticeCreated) -> None:
    """Register `hook(notice)`: a moderator's notice for one person was stored."""
    if hook not in _notice_created:
        _notice_created.append(hook)


def notice_created(notice: Notice) -> None:
    """Called by the moderation service inside its transaction."""
    for hook in _notice_created:
        hook(notice)


def on_message_removed(hook: MessageRemoved) -> None:
    """Register `hook(message)`, called when a message is deleted or removed (the
    assistant: its room's summary must not keep what the message said)."""
    if hook not in _message_removed:
        _message_removed.append(hook)


def message_removed(message: Message) -> None:
    """Called by `rooms.services.messages._remove_message` inside its transaction."""
    for hook in _message_removed:
        hook(message)

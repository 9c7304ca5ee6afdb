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
whatever they show comes after it; a hook may also return a function, called after commit
once its own after-commit work has started (the assistant shows its reply's message).
"""

from collections.abc import Callable
from typing import Any

from rooms.models import Membership, Message

MessageStored = Callable[[Message, Membership], Callable[[], None] | None]
ReportSnapshot = Callable[[Message, dict[str, Any]], None]

_message_stored: list[MessageStored] = []
_report_snapshot: list[ReportSnapshot] = []


def on_message_stored(hook: MessageStored) -> None:
    """Register `hook(message, membership)`, called for every person's new message; it may
    return a function to call once the room has been shown the message."""
    if hook not in _message_stored:
        _message_stored.append(hook)


def message_stored(message: Message, membership: Membership) -> list[Callable[[], None]]:
    """Called by the post service inside its transaction, after the message is stored.
    Returns what to call after commit, once the room has been shown the message."""
    after_shown = []
    for hook in _message_stored:
        show = hook(message, membership)
        if show is not None:
            after_shown.append(show)
    return after_shown


def on_report_snapshot(hook: ReportSnapshot) -> None:
    """Register `hook(message, snapshot)`, which may add to the dict a report keeps of
    `message` (the assistant: the run that wrote a reply, and its prompt)."""
    if hook not in _report_snapshot:
        _report_snapshot.append(hook)


def report_snapshot(message: Message, snapshot: dict[str, Any]) -> None:
    """Called by the moderation service while it takes a report's snapshot."""
    for hook in _report_snapshot:
        hook(message, snapshot)

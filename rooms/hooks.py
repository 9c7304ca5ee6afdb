"""The one way another app takes part in posting a message, without rooms importing it.

`rooms` must not import `assistant` (it depends on rooms, not the reverse), yet a message
that asks the assistant for something has to record that request in the same transaction
as the message, so the two commit together or not at all. The assistant registers one
function here at start-up (`AssistantConfig.ready`); the post service calls it.

A hook runs inside the posting transaction while the room's row is locked: it may only
record work (insert rows, register `transaction.on_commit` callbacks), never do it. Reading
history, building prompts and calling outside services happen after commit.
"""

from collections.abc import Callable

from rooms.models import Membership, Message

MessageStored = Callable[[Message, Membership], None]

_message_stored: list[MessageStored] = []


def on_message_stored(hook: MessageStored) -> None:
    """Register `hook(message, membership)`, called for every person's new message."""
    if hook not in _message_stored:
        _message_stored.append(hook)


def message_stored(message: Message, membership: Membership) -> None:
    """Called by the post service inside its transaction, after the message is stored."""
    for hook in _message_stored:
        hook(message, membership)

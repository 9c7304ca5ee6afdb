"""Every change to rooms, memberships and messages, one module per domain.

Each public `do_*` function is one transaction that validates, writes and then announces
the change after commit, calling `rooms.live` through `transaction.on_commit`. Views and
the WebSocket consumer call these and nothing else, so the rules hold on every path.
Callers check access first (`rooms.access`); these functions re-check what they need to
stay consistent.

- `core`: the room lock, sequence numbers, storing a message, system messages.
- `messages`: posting (`do_post_message` tells the whole story of a post), editing,
  deleting, the assistant's messages, read positions and read receipts, mute.
- `direct`: direct rooms and message requests.
- `groups`: groups, members, admins, the owner, leaving.
- `invites`: invite links and joining by one.
- `moderation`: reports and what moderators do about them.
- `reactions`: members' and the assistant's emoji on messages.

The names below are the public surface the views, the consumer and the assistant use;
`invites` and `moderation` are used as modules.
"""

from rooms.services.core import (
    do_post_system_message,
)
from rooms.services.direct import (
    direct_key,
    do_accept_request,
    do_block_from_request,
    do_decline_request,
    do_open_direct_room,
)
from rooms.services.groups import (
    TITLE_MAX_LENGTH,
    clean_title,
    do_add_members,
    do_create_group,
    do_leave_room,
    do_remove_member,
    do_remove_member_as_moderator,
    do_rename_room,
    do_set_admin,
    do_set_members_can_invite,
    do_transfer_ownership,
)
from rooms.services.messages import (
    PostResult,
    clean_message_body,
    do_delete_message,
    do_edit_message,
    do_mark_read,
    do_mark_read_in_rooms,
    do_post_assistant_message,
    do_post_message,
    do_post_message_as,
    do_remove_message_as_moderator,
    do_set_muted,
    do_set_read_receipts,
    do_update_assistant_message,
    send_refusal,
)
from rooms.services.reactions import (
    do_add_assistant_reaction,
    do_remove_assistant_reaction,
    do_toggle_reaction,
)

__all__ = [
    "TITLE_MAX_LENGTH",
    "PostResult",
    "clean_message_body",
    "clean_title",
    "direct_key",
    "do_accept_request",
    "do_add_assistant_reaction",
    "do_add_members",
    "do_block_from_request",
    "do_create_group",
    "do_decline_request",
    "do_delete_message",
    "do_edit_message",
    "do_leave_room",
    "do_mark_read",
    "do_mark_read_in_rooms",
    "do_open_direct_room",
    "do_post_assistant_message",
    "do_post_message",
    "do_post_message_as",
    "do_post_system_message",
    "do_remove_assistant_reaction",
    "do_remove_member",
    "do_remove_member_as_moderator",
    "do_remove_message_as_moderator",
    "do_rename_room",
    "do_set_admin",
    "do_set_members_can_invite",
    "do_set_muted",
    "do_set_read_receipts",
    "do_toggle_reaction",
    "do_transfer_ownership",
    "do_update_assistant_message",
    "send_refusal",
]

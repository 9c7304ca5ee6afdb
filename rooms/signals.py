"""What rooms announce after a change commits.

The narrow hook other apps (the assistant, the live layer) listen on, so rooms never
imports them.
"""

from django.dispatch import Signal

# message: the Message just stored (text or system).
message_posted = Signal()
# message, membership: a person's message, sent INSIDE the transaction that stores it, so a
# receiver's writes (the assistant's run) commit with the message or not at all.
message_created = Signal()
# message: a Message whose text was edited or deleted.
message_changed = Signal()
# room, added: list of users, removed: list of users.
members_changed = Signal()
# membership: a Membership whose per-person settings (mute) changed.
membership_updated = Signal()

"""What rooms announce after a change commits.

The narrow hook other apps (the assistant, the live layer) listen on, so rooms never
imports them.
"""

from django.dispatch import Signal

# message: the Message just stored (text or system).
message_posted = Signal()
# message: a Message whose text was edited or deleted.
message_changed = Signal()
# room, added: list of users, removed: list of users.
members_changed = Signal()
# membership: a Membership whose per-person settings (mute) changed.
membership_updated = Signal()

"""What accounts announce after a change commits (rooms' live layer listens)."""

from django.dispatch import Signal

# blocker: the User whose block list changed; blocked: the User they blocked or unblocked.
blocks_changed = Signal()

# user: the User whose password a staff member set or made unusable in the admin;
# request: the staff member's request.
password_set_by_admin = Signal()

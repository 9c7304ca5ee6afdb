"""What accounts announce after a change commits (rooms' live layer listens)."""

from django.dispatch import Signal

# blocker: the User whose block list changed; blocked: the User they blocked or unblocked.
blocks_changed = Signal()

"""State changes for accounts: profile edits and profile pictures."""

from django.db import transaction

from accounts.avatars import make_avatar_files
from accounts.models import User


def _delete_files_on_commit(*files) -> None:
    names = [(f.storage, f.name) for f in files if f]
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in names])


def do_update_profile(user: User, *, display_name: str) -> None:
    user.display_name = display_name.strip()
    user.save(update_fields=["display_name"])


def do_set_desktop_notifications(user: User, enabled: bool) -> None:
    user.desktop_notifications = enabled
    user.save(update_fields=["desktop_notifications"])


def do_set_avatar(user: User, upload) -> None:
    """Replace the user's picture with square WebP copies of `upload`.

    Raises ValidationError (with a message for the person) when the upload is not an image
    we accept; the old picture is kept in that case.
    """
    files = make_avatar_files(upload)
    with transaction.atomic():
        old = (user.avatar_large, user.avatar_small)
        _delete_files_on_commit(*old)
        user.avatar_large.save(files.large.name, files.large, save=False)
        user.avatar_small.save(files.small.name, files.small, save=False)
        user.save(update_fields=["avatar_large", "avatar_small"])


def do_remove_avatar(user: User) -> None:
    """Go back to the generated avatar (initials on a colour)."""
    with transaction.atomic():
        _delete_files_on_commit(user.avatar_large, user.avatar_small)
        user.avatar_large = ""
        user.avatar_small = ""
        user.save(update_fields=["avatar_large", "avatar_small"])

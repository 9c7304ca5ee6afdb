"""State changes for accounts: profile edits, profile pictures, blocks."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext as _

from accounts import signals
from accounts.avatars import make_avatar_files
from accounts.models import Block, User
from accounts.validators import validate_display_name


def _delete_files_on_commit(*files) -> None:
    names = [(f.storage, f.name) for f in files if f]
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in names])


def do_update_profile(user: User, *, display_name: str, language: str | None = None) -> None:
    """Raises ValidationError for a name that hides text or poses as staff (see
    accounts.validators.validate_display_name); the old name is kept then. `language`
    ('' follows the browser) is one of settings.LANGUAGES; None leaves it as it is."""
    display_name = display_name.strip()
    validate_display_name(display_name)
    user.display_name = display_name
    fields = ["display_name"]
    if language is not None:
        if language and language not in dict(settings.LANGUAGES):
            raise ValidationError(_("That language is not available."))
        user.language = language
        fields.append("language")
    user.save(update_fields=fields)


def do_set_time_zone(user: User, name: str) -> bool:
    """Remember the browser's time zone (an IANA name such as "Europe/Paris"); False, and
    nothing changes, for a name this system does not know."""
    from calpico.middleware import time_zone

    if time_zone(name) is None:
        return False
    if user.time_zone != name:
        user.time_zone = name
        user.save(update_fields=["time_zone"])
    return True


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


# Blocking


def blocked_ids(user: User) -> set[int]:
    """The ids of the people `user` has blocked."""
    return set(Block.objects.filter(blocker=user).values_list("blocked_id", flat=True))


def block_relations(user: User) -> tuple[set[int], set[int]]:
    """Who `user` has blocked and who has blocked `user`, in one query."""
    blocked: set[int] = set()
    blocked_by: set[int] = set()
    rows = Block.objects.filter(Q(blocker=user) | Q(blocked=user)).values_list("blocker_id", "blocked_id")
    for blocker_id, blocked_id in rows:
        if blocker_id == user.pk:
            blocked.add(blocked_id)
        else:
            blocked_by.add(blocker_id)
    return blocked, blocked_by


def has_blocked(blocker_id: int, blocked_id: int) -> bool:
    return Block.objects.filter(blocker_id=blocker_id, blocked_id=blocked_id).exists()


def do_block(blocker: User, blocked: User) -> bool:
    """Block someone; True if they were not blocked already. They are not told."""
    if blocker.pk == blocked.pk:
        raise ValidationError(gettext("You can't block yourself."), code="self")
    _, created = Block.objects.get_or_create(blocker=blocker, blocked=blocked)
    if created:
        transaction.on_commit(
            lambda: signals.blocks_changed.send(sender=Block, blocker=blocker, blocked=blocked)
        )
    return created


def do_unblock(blocker: User, blocked: User) -> bool:
    deleted, _ = Block.objects.filter(blocker=blocker, blocked=blocked).delete()
    if deleted:
        transaction.on_commit(
            lambda: signals.blocks_changed.send(sender=Block, blocker=blocker, blocked=blocked)
        )
    return bool(deleted)

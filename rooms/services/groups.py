"""Groups: creating and naming them, members, admins, the owner, leaving."""

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import has_blocked
from calpico.text import check_no_direction_overrides, visible_characters
from rooms import hooks, live
from rooms.access import can_administer, can_remove_member, is_owner
from rooms.models import Invite, Membership, Room
from rooms.services.core import announce_on_commit, check_room_size, lock_room, system_message
from rooms.system_events import join_names

TITLE_MAX_LENGTH = 80


def clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    if not visible_characters(title):
        raise ValidationError(_("Give the group a name."), code="empty")
    check_no_direction_overrides(title, "Group names")
    if len(title) > TITLE_MAX_LENGTH:
        raise ValidationError(
            f"Group names are at most {TITLE_MAX_LENGTH} characters; this one has {len(title)}.",
            code="too_long",
        )
    return title


def do_create_group(owner: User, title: str, members: Iterable[User], *, encrypted: bool = False) -> Room:
    """A new group owned by `owner` with `members` (the owner is added if missing);
    `encrypted`: end-to-end encrypted, without the assistant (docs/e2ee.md)."""
    title = clean_title(title)
    others = list({m.pk: m for m in members if m.pk != owner.pk}.values())
    if any(not m.is_active for m in others):
        raise ValidationError(_("One of those accounts is not available."), code="inactive")
    _refuse_blockers(owner, others)
    check_room_size(1, len(others), encrypted=encrypted)
    with transaction.atomic():
        room = Room.objects.create(kind=Room.Kind.GROUP, title=title, owner=owner, encrypted=encrypted)
        Membership.objects.bulk_create(
            [Membership(room=room, user=owner)] + [Membership(room=room, user=m) for m in others]
        )
        room = lock_room(room.pk)
        system_message(room, "group_created", actor=owner, title=title)
        if others:
            system_message(room, "members_added", actor=owner, users=[u.name for u in others])
            announce_on_commit(live.announce_members_changed, room, added=others)
            hooks.members_added(room, owner.pk, [u.pk for u in others])
    return room


def _refuse_blockers(actor: User, users: list[User]) -> None:
    """Nobody is put in a group by someone they blocked."""
    refusing = [u for u in users if has_blocked(u.pk, actor.pk)]
    if refusing:
        raise ValidationError(
            _("%(names)s can't be added to this group.") % {"names": join_names([u.name for u in refusing])},
            code="blocked",
        )


def _require_admin(actor: User, room: Room) -> None:
    if not can_administer(actor, room):
        raise PermissionDenied(_("Only the group's owner and admins can do that."))


def _require_owner(actor: User, room: Room) -> None:
    if not is_owner(actor, room):
        raise PermissionDenied(_("Only the group's owner can do that."))


def do_rename_room(actor: User, room: Room, title: str) -> Room:
    _require_admin(actor, room)
    title = clean_title(title)
    with transaction.atomic():
        room = lock_room(room.pk)
        if room.title == title:
            return room
        room.title = title
        room.save(update_fields=["title"])
        system_message(room, "group_renamed", actor=actor, title=title)
    return room


def do_add_members(actor: User, room: Room, users: Iterable[User]) -> list[User]:
    """Add people to the group; those already in it are skipped. Returns who was added."""
    _require_admin(actor, room)
    with transaction.atomic():
        room = lock_room(room.pk)
        present = set(Membership.objects.filter(room=room).values_list("user_id", flat=True))
        new = list({u.pk: u for u in users if u.pk not in present}.values())
        if any(not u.is_active for u in new):
            raise ValidationError(_("One of those accounts is not available."), code="inactive")
        _refuse_blockers(actor, new)
        if not new:
            return []
        check_room_size(len(present), len(new), encrypted=room.encrypted)
        # New members start with the room's history read up to now.
        Membership.objects.bulk_create(
            [Membership(room=room, user=u, last_read_seq=room.last_seq) for u in new]
        )
        system_message(room, "members_added", actor=actor, users=[u.name for u in new])
        announce_on_commit(live.announce_members_changed, room, added=new)
        hooks.members_added(room, actor.pk, [u.pk for u in new])
    return new


def do_remove_member(actor: User, room: Room, user: User) -> None:
    """The owner removes anyone, an admin removes ordinary members; they lose access to
    the room at once."""
    _require_admin(actor, room)
    if user.pk == actor.pk:
        raise ValidationError(_("To leave the group, use Leave."), code="self")
    with transaction.atomic():
        room = lock_room(room.pk)
        target = Membership.objects.filter(room=room, user=user).first()
        if target is None:
            raise ValidationError(
                _("%(name)s is not in this group.") % {"name": user.name}, code="not_member"
            )
        if not can_remove_member(actor, room, target):
            raise PermissionDenied(_("Only the owner can remove the owner or an admin."))
        target.delete()
        _revoke_links_of(room, user)
        system_message(room, "member_removed", actor=actor, user=user.name)
        announce_on_commit(live.announce_members_changed, room, removed=[user])


def _hand_over_or_archive(room: Room, departed: User) -> None:
    """After someone left a group: an owner's group goes to the longest-standing member;
    a group left empty is archived."""
    if room.owner_id == departed.pk:
        successor = (
            Membership.objects.filter(room=room).select_related("user").order_by("joined_at", "pk").first()
        )
        if successor is None:
            room.owner = None
            room.archived_at = timezone.now()
            room.save(update_fields=["owner", "archived_at"])
        else:
            room.owner = successor.user
            room.save(update_fields=["owner"])
            system_message(room, "owner_succeeded", user=successor.user.name)
    elif not Membership.objects.filter(room=room).exists():
        room.archived_at = timezone.now()
        room.save(update_fields=["archived_at"])


def do_remove_member_as_moderator(room: Room, user: User) -> bool:
    """A moderator takes someone out of a group (the moderation service audits it)."""
    if not room.is_group:
        raise ValidationError(
            "Only groups have members to remove; suspend the account instead.", code="direct"
        )
    with transaction.atomic():
        room = lock_room(room.pk)
        deleted, _ = Membership.objects.filter(room=room, user=user).delete()
        if not deleted:
            return False
        _revoke_links_of(room, user)
        system_message(room, "removed_by_moderator", user=user.name)
        _hand_over_or_archive(room, user)
        announce_on_commit(live.announce_members_changed, room, removed=[user])
    return True


def _revoke_links_of(room: Room, user: User) -> None:
    """Someone removed from a group does not keep a way back in through their own links."""
    Invite.objects.filter(room=room, created_by=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def do_set_admin(actor: User, room: Room, user: User, admin: bool) -> None:
    """The owner makes a member an admin, or an admin a member again."""
    _require_owner(actor, room)
    role = Membership.Role.ADMIN if admin else Membership.Role.MEMBER
    with transaction.atomic():
        room = lock_room(room.pk)
        target = Membership.objects.filter(room=room, user=user).first()
        if target is None:
            raise ValidationError(
                _("%(name)s is not in this group.") % {"name": user.name}, code="not_member"
            )
        if user.pk == room.owner_id or target.role == role:
            return
        target.role = role
        target.save(update_fields=["role"])
        system_message(room, "admin_made" if admin else "admin_removed", actor=actor, user=user.name)


def do_set_members_can_invite(actor: User, room: Room, allowed: bool) -> None:
    """The owner decides whether every member may create invite links."""
    _require_owner(actor, room)
    with transaction.atomic():
        room = lock_room(room.pk)
        if room.members_can_invite == allowed:
            return
        room.members_can_invite = allowed
        room.save(update_fields=["members_can_invite"])
        system_message(room, "invites_everyone" if allowed else "invites_admins", actor=actor)


def do_leave_room(membership: Membership) -> None:
    """Leave a group. An owner who leaves hands the group to the longest-standing member;
    the last one out archives it."""
    room = membership.room
    user = membership.user
    if not room.is_group:
        raise ValidationError(_("You can't leave a direct conversation."), code="direct")
    with transaction.atomic():
        room = lock_room(room.pk)
        Membership.objects.filter(pk=membership.pk).delete()
        system_message(room, "member_left", user=user.name)
        _hand_over_or_archive(room, user)
        announce_on_commit(live.announce_members_changed, room, removed=[user])


def do_transfer_ownership(actor: User, room: Room, new_owner: User) -> None:
    _require_owner(actor, room)
    with transaction.atomic():
        room = lock_room(room.pk)
        if not Membership.objects.filter(room=room, user=new_owner).exists():
            raise ValidationError(
                _("%(name)s is not in this group.") % {"name": new_owner.name}, code="not_member"
            )
        if new_owner.pk == actor.pk:
            return
        room.owner = new_owner
        room.save(update_fields=["owner"])
        system_message(room, "owner_made", actor=actor, user=new_owner.name)

"""Invite links: create, revoke, look up and join by one.

A link is `/join/<token>/` with 256 random bits. Looking one up never says whether an
unknown token ever existed: unknown and revoked read the same. Joining takes the invite's
row lock (and SQLite's single writer), so two people racing for its last use cannot both
get in.
"""

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import User
from rooms import live, ratelimits
from rooms.access import can_administer, can_invite
from rooms.models import Invite, Membership, Room
from rooms.services.core import announce_on_commit, check_room_size, lock_room, system_message

EXPIRY_CHOICES = {
    "1h": (gettext_lazy("1 hour"), dt.timedelta(hours=1)),
    "1d": (gettext_lazy("1 day"), dt.timedelta(days=1)),
    "7d": (gettext_lazy("7 days"), dt.timedelta(days=7)),
    "never": (gettext_lazy("Never"), None),
}
USES_CHOICES = {
    "1": (gettext_lazy("1 use"), 1),
    "5": (gettext_lazy("5 uses"), 5),
    "25": (gettext_lazy("25 uses"), 25),
    "unlimited": (gettext_lazy("Unlimited"), None),
}


class InviteProblem:
    """Why an invite cannot be used, for the page that says so."""

    UNKNOWN = "unknown"  # also revoked: the two must look the same
    EXPIRED = "expired"
    USED_UP = "used_up"
    FULL = "full"


@dataclass(frozen=True)
class InviteLookup:
    invite: Invite | None
    problem: str | None


def active_invites(room: Room) -> list[Invite]:
    now = timezone.now()
    return list(
        Invite.objects.filter(room=room, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        .select_related("created_by")
        .order_by("-created_at")
    )


def do_create_invite(actor: User, membership: Membership, *, expiry: str, uses: str) -> Invite:
    """A new link into the member's group, if they may invite."""
    room = membership.room
    if not can_invite(actor, room, membership):
        raise PermissionDenied(_("Only the group's owner and admins can create invite links here."))
    if expiry not in EXPIRY_CHOICES or uses not in USES_CHOICES:
        raise ValidationError(_("Choose how long the link works and how many times."), code="invalid")
    ratelimits.hit(ratelimits.invites_created(), actor.pk)
    delta = EXPIRY_CHOICES[expiry][1]
    return Invite.objects.create(
        room=room,
        created_by=actor,
        expires_at=timezone.now() + delta if delta else None,
        max_uses=USES_CHOICES[uses][1],
    )


def do_revoke_invite(actor: User, invite: Invite, membership: Membership) -> None:
    """Owner and admins revoke any link; a member revokes their own."""
    if invite.room_id != membership.room_id:
        raise PermissionDenied(_("That link belongs to another room."))
    if not (can_administer(actor, invite.room, membership) or invite.created_by_id == actor.pk):
        raise PermissionDenied(_("Only the group's owner and admins can revoke others' links."))
    Invite.objects.filter(pk=invite.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def _problem(invite: Invite | None, now: dt.datetime) -> str | None:
    if invite is None or invite.revoked_at is not None or invite.room.archived_at is not None:
        return InviteProblem.UNKNOWN
    if invite.is_expired(now):
        return InviteProblem.EXPIRED
    if invite.is_used_up:
        return InviteProblem.USED_UP
    return None


def look_up(token: str) -> InviteLookup:
    """The invite behind a token and what, if anything, stops it being used."""
    invite = None
    if isinstance(token, str) and 20 <= len(token) <= 64:
        invite = Invite.objects.select_related("room").filter(token=token).first()
    return InviteLookup(invite, _problem(invite, timezone.now()))


@dataclass(frozen=True)
class JoinResult:
    room: Room
    joined: bool  # False: already a member


class CannotJoin(ValidationError):
    def __init__(self, problem: str, message: str) -> None:
        self.problem = problem
        super().__init__(message, code=problem)


PROBLEM_TEXT = {
    InviteProblem.UNKNOWN: "This invite link is not valid. It may have been revoked; ask for a new one.",
    InviteProblem.EXPIRED: "This invite link has expired. Ask for a new one.",
    InviteProblem.USED_UP: "This invite link has been used as many times as it allows. Ask for a new one.",
    InviteProblem.FULL: "This group is full.",
}


def do_join_by_invite(user: User, token: str) -> JoinResult:
    """Join the invite's group. Joining a group you are in already changes nothing."""
    with transaction.atomic():
        invite = Invite.objects.select_for_update().filter(token=token).first()
        if invite is None:
            raise CannotJoin(InviteProblem.UNKNOWN, PROBLEM_TEXT[InviteProblem.UNKNOWN])
        room = lock_room(invite.room_id)
        invite.room = room
        if Membership.objects.filter(room=room, user=user).exists():
            return JoinResult(room, joined=False)
        problem = _problem(invite, timezone.now())
        if problem is not None:
            raise CannotJoin(problem, PROBLEM_TEXT[problem])
        try:
            check_room_size(Membership.objects.filter(room=room).count(), 1, encrypted=room.encrypted)
        except ValidationError:
            raise CannotJoin(InviteProblem.FULL, PROBLEM_TEXT[InviteProblem.FULL]) from None
        Membership.objects.create(room=room, user=user, last_read_seq=room.last_seq)
        Invite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
        system_message(room, "joined_by_link", actor=user, user=user.name)
        announce_on_commit(live.announce_members_changed, room, added=[user])
    return JoinResult(room, joined=True)

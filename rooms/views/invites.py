"""Invite links: making and revoking them on the settings page, and joining by one."""

import contextlib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from rooms import ratelimits
from rooms.access import access_invite, access_membership
from rooms.forms import InviteForm
from rooms.queries import room_members
from rooms.services import invites
from rooms.views._common import settings_page


@require_POST
def create_invite(request, room_id: int):
    membership = access_membership(request.user, room_id)
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invites.do_create_invite(
                request.user, membership, expiry=form.cleaned_data["expiry"], uses=form.cleaned_data["uses"]
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Invite link created: copy it from the list below."))
            return redirect(f"{reverse('rooms:settings', args=[membership.room.pk])}#invites")
    return settings_page(request, membership, status=422, invite_form=form)


@require_POST
def revoke_invite(request, room_id: int, invite_id: int):
    membership = access_membership(request.user, room_id)
    invite = access_invite(membership, invite_id)
    # The service refuses (PermissionDenied) anyone `access.can_manage_invite` does not allow.
    invites.do_revoke_invite(request.user, invite, membership)
    messages.success(request, _("The invite link no longer works."))
    return redirect(f"{reverse('rooms:settings', args=[membership.room.pk])}#invites")


def _client_ip(request) -> str:
    # REMOTE_ADDR is the proxy's address behind one; see README on running behind a proxy.
    return request.META.get("REMOTE_ADDR", "unknown")


def _join_problem(request, problem: str, message: str):
    """Say why the link does not work, and count the failure against the address."""
    status = {"unknown": 404, "expired": 410, "used_up": 410, "full": 409}.get(problem, 400)
    if problem != invites.InviteProblem.FULL:
        # Over the limit, the next request is refused before it looks anything up.
        with contextlib.suppress(ratelimits.RateLimited):
            ratelimits.hit(ratelimits.failed_joins(), _client_ip(request))
    return render(request, "rooms/join_problem.html", {"problem": problem, "message": message}, status=status)


def _joins_blocked(request):
    if ratelimits.peek(ratelimits.failed_joins(), _client_ip(request)):
        message = _("Too many invite links that did not work came from your network. Try again in an hour.")
        return render(
            request, "rooms/join_problem.html", {"problem": "rate_limited", "message": message}, status=429
        )
    return None


@require_GET
@login_not_required
def join(request, token: str):
    """The preview of an invite: what you would join, before you join it."""
    blocked = _joins_blocked(request)
    if blocked is not None:
        return blocked
    lookup = invites.look_up(token)
    if lookup.problem is not None:
        return _join_problem(request, lookup.problem, invites.PROBLEM_TEXT[lookup.problem])
    assert lookup.invite is not None  # no problem: the invite is there
    room = lookup.invite.room
    members = room_members(room)
    already = request.user.is_authenticated and any(m.pk == request.user.pk for m in members)
    full = not already and len(members) >= settings.ROOM_MAX_MEMBERS
    if full:
        return _join_problem(request, invites.InviteProblem.FULL, invites.PROBLEM_TEXT["full"])
    context = {"invite": lookup.invite, "room": room, "members": members, "already": already}
    return render(request, "rooms/join.html", context)


@require_POST
def join_confirm(request, token: str):
    blocked = _joins_blocked(request)
    if blocked is not None:
        return blocked
    try:
        result = invites.do_join_by_invite(request.user, token)
    except invites.CannotJoin as exc:
        return _join_problem(request, exc.problem, exc.messages[0])
    if result.joined:
        messages.success(request, _("You joined %(title)s.") % {"title": result.room.title})
    return redirect(result.room.get_absolute_url())

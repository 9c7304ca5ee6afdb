"""Groups and their members: creating a group, its settings page, renaming, adding and
removing members, admins and ownership, leaving and muting a room."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rooms import services
from rooms.access import access_admin_membership, access_member, access_membership, access_owner_membership
from rooms.forms import AddMembersForm, GroupForm, RenameForm
from rooms.queries import room_members, room_title, sidebar_entries
from rooms.views._common import htmx_redirect, settings_page


@require_http_methods(["GET", "POST"])
def new_group(request):
    form = GroupForm(request.POST or None, initial={"members": request.GET.get("members", "")})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                room = services.do_create_group(
                    request.user,
                    form.cleaned_data["title"],
                    form.cleaned_data["members"],
                    encrypted=form.cleaned_data["encrypted"],
                )
            except ValidationError as exc:
                form.add_error("title" if exc.code in {"empty", "too_long", "direction"} else "members", exc)
            else:
                return htmx_redirect(request, room.get_absolute_url())
        status = 422
    return render(
        request,
        "rooms/new_group.html",
        {"form": form, "sidebar": sidebar_entries(request.user)},
        status=status,
    )


@require_GET
def room_settings(request, room_id: int):
    return settings_page(request, access_membership(request.user, room_id))


@require_POST
def rename_room(request, room_id: int):
    membership = access_admin_membership(request.user, room_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        try:
            services.do_rename_room(request.user, membership.room, form.cleaned_data["title"])
        except ValidationError as exc:
            form.add_error("title", exc)
        else:
            messages.success(request, _("The group is renamed."))
            return redirect("rooms:settings", membership.room.pk)
    return settings_page(request, membership, status=422, rename_form=form)


@require_POST
def add_members(request, room_id: int):
    membership = access_admin_membership(request.user, room_id)
    form = AddMembersForm(request.POST)
    if form.is_valid():
        try:
            added = services.do_add_members(request.user, membership.room, form.cleaned_data["members"])
        except ValidationError as exc:
            form.add_error("members", exc)
        else:
            if added:
                messages.success(request, _("Added %(names)s.") % {"names": ", ".join(u.name for u in added)})
            else:
                messages.info(request, _("They are already in the group."))
            return redirect("rooms:settings", membership.room.pk)
    return settings_page(request, membership, status=422, add_form=form)


@require_POST
def remove_member(request, room_id: int):
    membership = access_admin_membership(request.user, room_id)
    try:
        user = access_member(membership.room, request.POST.get("user_id"))
        services.do_remove_member(request.user, membership.room, user)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"Removed {user.name}.")
    return redirect("rooms:settings", membership.room.pk)


@require_POST
def transfer_ownership(request, room_id: int):
    membership = access_owner_membership(request.user, room_id)
    try:
        user = access_member(membership.room, request.POST.get("user_id"))
        services.do_transfer_ownership(request.user, membership.room, user)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, _("%(name)s now owns the group.") % {"name": user.name})
    return redirect("rooms:settings", membership.room.pk)


@require_POST
def set_admin(request, room_id: int):
    """The owner makes a member an admin, or takes it back."""
    membership = access_owner_membership(request.user, room_id)
    try:
        member = access_member(membership.room, request.POST.get("user_id"))
        services.do_set_admin(request.user, membership.room, member, request.POST.get("admin") == "on")
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    return redirect("rooms:settings", membership.room.pk)


@require_POST
def set_members_can_invite(request, room_id: int):
    membership = access_owner_membership(request.user, room_id)
    services.do_set_members_can_invite(request.user, membership.room, request.POST.get("allowed") == "on")
    return redirect("rooms:settings", membership.room.pk)


@require_POST
def leave_room(request, room_id: int):
    membership = access_membership(request.user, room_id)
    try:
        services.do_leave_room(membership)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect("rooms:settings", membership.room.pk)
    messages.success(request, _("You left %(title)s.") % {"title": membership.room.title})
    return htmx_redirect(request, reverse("rooms:index"))


@require_POST
def set_muted(request, room_id: int):
    membership = access_membership(request.user, room_id)
    muted = request.POST.get("muted") == "on"
    services.do_set_muted(membership, muted)
    title = room_title(membership.room, request.user, room_members(membership.room))
    messages.success(
        request, (_("%(title)s is muted.") if muted else _("%(title)s is unmuted.")) % {"title": title}
    )
    if request.POST.get("next") == "notifications":
        return redirect("rooms:notifications")
    return redirect("rooms:settings", membership.room.pk)

import contextlib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import User
from accounts.services import do_set_desktop_notifications
from rooms import invites, moderation, presence, ratelimits, services
from rooms.access import (
    access_member,
    access_membership,
    access_message,
    can_administer,
    can_change_message,
    can_delete_message,
    can_invite,
    can_remove_member,
    is_owner,
)
from rooms.attachments import make_attachment
from rooms.forms import (
    AddMembersForm,
    EditMessageForm,
    GroupForm,
    InviteForm,
    MessageForm,
    RenameForm,
    ReportForm,
)
from rooms.models import Invite, Membership, Message
from rooms.queries import history_page, message_requests, room_members, room_title, sidebar_entries


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_GET
def index(request):
    return render(request, "rooms/index.html", {"sidebar": sidebar_entries(request.user)})


def _room_context(request, membership: Membership, *, before: int | None = None, form=None):
    room = membership.room
    page = history_page(room, before=before)
    reply_to = None
    if form is None:
        form = MessageForm()
        reply_to = _reply_target(membership, request.GET.get("reply_to"))
        if reply_to:
            form.initial["reply_to"] = reply_to.pk
        form.initial["body"] = request.GET.get("body", "")[: settings.MESSAGE_MAX_LENGTH]
    elif form.data.get("reply_to"):
        reply_to = _reply_target(membership, form.data.get("reply_to"))
    members = room_members(room)
    sidebar = sidebar_entries(request.user)
    return {
        "online": _visible_online(members),
        "room": room,
        "membership": membership,
        "title": room_title(room, request.user, members),
        "members": members,
        "page": page,
        "form": form,
        "reply_to": reply_to,
        "viewer": request.user,
        "is_admin": can_administer(request.user, room, membership),
        "blocked_ids": sorted(sidebar.blocked),
        "refusal": services.send_refusal(room, request.user),
        "is_request": membership.request == Membership.Request.PENDING,
        "sidebar": sidebar,
    }


def _visible_online(members) -> set[int]:
    """Who shows as online: not someone who has not accepted this conversation's request
    (a stranger would learn they are around)."""
    return presence.online_user_ids(
        m.pk for m in members if m.room_membership.request == Membership.Request.NONE
    )


def _reply_target(membership: Membership, value) -> Message | None:
    if not value:
        return None
    try:
        message = access_message(membership, value)
    except Http404:
        return None
    return None if message.is_system or message.is_deleted else message


def _before(request) -> int | None:
    try:
        value = int(request.GET.get("before", ""))
    except ValueError:
        return None
    return value if value > 0 else None


@require_GET
def room(request, room_id: int):
    membership = access_membership(request.user, room_id)
    before = _before(request)
    if request.htmx and before:
        page = history_page(membership.room, before=before)
        return render(
            request,
            "rooms/room.html#older",
            {"room": membership.room, "page": page, "viewer": request.user},
        )
    if before is None:
        # Opening a room reads it; do it first so the sidebar shows it read.
        services.do_mark_read(membership, membership.room.last_seq)
    return render(request, "rooms/room.html", _room_context(request, membership, before=before))


@require_GET
def composer(request, room_id: int):
    """The composer alone, e.g. with a reply target chosen."""
    membership = access_membership(request.user, room_id)
    form = MessageForm()
    reply_to = _reply_target(membership, request.GET.get("reply_to"))
    if reply_to:
        form.initial["reply_to"] = reply_to.pk
    form.initial["body"] = request.GET.get("body", "")[: settings.MESSAGE_MAX_LENGTH]
    return render(
        request, "rooms/room.html#composer", {"room": membership.room, "form": form, "reply_to": reply_to}
    )


@require_POST
def post_message(request, room_id: int):
    membership = access_membership(request.user, room_id)
    form = MessageForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            image = None
            if form.cleaned_data["image"]:
                try:
                    image = make_attachment(form.cleaned_data["image"])
                except ValidationError as exc:
                    form.add_error("image", exc)
                    raise
            result = services.do_post_message(
                membership,
                form.cleaned_data["body"],
                client_id=form.cleaned_data["client_id"],
                reply_to_id=form.cleaned_data["reply_to"],
                image=image,
            )
        except ValidationError as exc:
            if not form.has_error("image"):
                form.add_error("body", exc)
        else:
            if not request.htmx:
                return redirect(f"{membership.room.get_absolute_url()}#m-{result.message.pk}")
            return render(
                request,
                "rooms/_posted.html",
                {
                    "room": membership.room,
                    "form": MessageForm(),
                    "message": result.message,
                    "viewer": request.user,
                },
            )
    if request.htmx:
        reply_to = _reply_target(membership, form.data.get("reply_to"))
        return render(
            request,
            "rooms/room.html#composer",
            {"room": membership.room, "form": form, "reply_to": reply_to},
            status=422,
        )
    return render(request, "rooms/room.html", _room_context(request, membership, form=form), status=422)


def _own_message(request, room_id, message_id) -> tuple[Membership, Message]:
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    if not can_change_message(request.user, message):
        raise PermissionDenied("You can only change your own messages.")
    return membership, message


@require_GET
def message_detail(request, room_id: int, message_id: int):
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    if request.htmx:
        return render(request, "rooms/_message.html", {"message": message, "viewer": request.user})
    return redirect(f"{membership.room.get_absolute_url()}#m-{message.pk}")


@require_http_methods(["GET", "POST"])
def edit_message(request, room_id: int, message_id: int):
    membership, message = _own_message(request, room_id, message_id)
    status = 200
    if request.method == "POST":
        form = EditMessageForm(request.POST)
        if form.is_valid():
            try:
                services.do_edit_message(request.user, message, form.cleaned_data["body"])
            except ValidationError as exc:
                form.add_error("body", exc)
            else:
                if request.htmx:
                    return render(
                        request, "rooms/_message.html", {"message": message, "viewer": request.user}
                    )
                return redirect(f"{membership.room.get_absolute_url()}#m-{message.pk}")
        status = 422
    else:
        form = EditMessageForm(initial={"body": message.body})
    template = "rooms/edit_message.html#form" if request.htmx else "rooms/edit_message.html"
    context = {"room": membership.room, "message": message, "form": form, "sidebar": None}
    if not request.htmx:
        context["sidebar"] = sidebar_entries(request.user)
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
def delete_message(request, room_id: int, message_id: int):
    """Delete my message, or (an owner or admin) remove anyone's. GET asks first: the
    message's Delete and Remove buttons lead here when the browser runs no JavaScript."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    back = f"{membership.room.get_absolute_url()}#m-{message.pk}"
    if request.method == "GET" and message.is_deleted:
        return redirect(back)  # gone already: nothing to ask
    if not can_delete_message(request.user, message, membership):
        raise PermissionDenied("You can only delete your own messages.")
    if request.method == "GET":
        own = message.author_id == request.user.pk
        context = {
            "question": "Delete this message?" if own else "Remove this message?",
            "explanation": (
                "It is deleted for everyone in the conversation."
                if own
                else "It is removed for everyone and shows as removed by an admin."
            ),
            "confirm": "Delete" if own else "Remove",
            "danger": True,
            "message": message,
            "cancel_url": back,
        }
        return render(request, "confirm.html", context)
    services.do_delete_message(request.user, message, membership=membership)
    if request.htmx:
        return render(request, "rooms/_message.html", {"message": message, "viewer": request.user})
    return redirect(back)


@require_POST
def mark_read(request, room_id: int):
    membership = access_membership(request.user, room_id)
    try:
        seq = int(request.POST.get("seq", ""))
    except ValueError:
        return HttpResponse("seq must be a whole number.", status=400)
    if not 0 <= seq < 2**63:
        return HttpResponse("seq is out of range.", status=400)
    services.do_mark_read(membership, seq)
    return HttpResponse(status=204)


# Starting conversations


@require_GET
def new_direct(request):
    return render(request, "rooms/new_direct.html", {"sidebar": sidebar_entries(request.user)})


@require_POST
def open_direct(request, username: str):
    other = get_object_or_404(User, username__iexact=username, is_active=True)
    try:
        room = services.do_open_direct_room(request.user, other)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return _redirect(request, other.get_absolute_url())
    return _redirect(request, room.get_absolute_url())


@require_http_methods(["GET", "POST"])
def new_group(request):
    form = GroupForm(request.POST or None, initial={"members": request.GET.get("members", "")})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                room = services.do_create_group(
                    request.user, form.cleaned_data["title"], form.cleaned_data["members"]
                )
            except ValidationError as exc:
                form.add_error("title" if exc.code in {"empty", "too_long", "direction"} else "members", exc)
            else:
                return _redirect(request, room.get_absolute_url())
        status = 422
    return render(
        request,
        "rooms/new_group.html",
        {"form": form, "sidebar": sidebar_entries(request.user)},
        status=status,
    )


# Group settings


def _settings_page(
    request, membership: Membership, *, status=200, rename_form=None, add_form=None, invite_form=None
):
    room = membership.room
    members = room_members(room)
    is_admin = can_administer(request.user, room, membership)
    for member in members:
        member.removable = is_admin and can_remove_member(
            request.user, room, member.room_membership, membership
        )
    context = {
        "online": _visible_online(members),
        "room": room,
        "membership": membership,
        "title": room_title(room, request.user, members),
        "members": members,
        "is_admin": is_admin,
        "is_owner": is_owner(request.user, room),
        "can_invite": can_invite(request.user, room, membership),
        "invites": _visible_invites(request.user, room, is_admin),
        "invite_form": invite_form or InviteForm(),
        "rename_form": rename_form or RenameForm(initial={"title": room.title}),
        "add_form": add_form or AddMembersForm(),
        "max_members": settings.ROOM_MAX_MEMBERS,
        "sidebar": sidebar_entries(request.user),
    }
    return render(request, "rooms/room_settings.html", context, status=status)


@require_GET
def room_settings(request, room_id: int):
    return _settings_page(request, access_membership(request.user, room_id))


def _visible_invites(user, room, is_admin: bool) -> list:
    """Admins manage every link; a member sees only the links they made."""
    if not room.is_group:
        return []
    active = invites.active_invites(room)
    return active if is_admin else [invite for invite in active if invite.created_by_id == user.pk]


def _group_admin(request, room_id) -> Membership:
    membership = access_membership(request.user, room_id)
    if not can_administer(request.user, membership.room, membership):
        raise PermissionDenied("Only the group's owner and admins can do that.")
    return membership


def _group_owner(request, room_id) -> Membership:
    membership = access_membership(request.user, room_id)
    if not is_owner(request.user, membership.room):
        raise PermissionDenied("Only the group's owner can do that.")
    return membership


@require_POST
def rename_room(request, room_id: int):
    membership = _group_admin(request, room_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        try:
            services.do_rename_room(request.user, membership.room, form.cleaned_data["title"])
        except ValidationError as exc:
            form.add_error("title", exc)
        else:
            messages.success(request, "The group is renamed.")
            return redirect("rooms:settings", membership.room.pk)
    return _settings_page(request, membership, status=422, rename_form=form)


@require_POST
def add_members(request, room_id: int):
    membership = _group_admin(request, room_id)
    form = AddMembersForm(request.POST)
    if form.is_valid():
        try:
            added = services.do_add_members(request.user, membership.room, form.cleaned_data["members"])
        except ValidationError as exc:
            form.add_error("members", exc)
        else:
            if added:
                messages.success(request, f"Added {', '.join(u.name for u in added)}.")
            else:
                messages.info(request, "They are already in the group.")
            return redirect("rooms:settings", membership.room.pk)
    return _settings_page(request, membership, status=422, add_form=form)


@require_POST
def remove_member(request, room_id: int):
    membership = _group_admin(request, room_id)
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
    membership = _group_owner(request, room_id)
    try:
        user = access_member(membership.room, request.POST.get("user_id"))
        services.do_transfer_ownership(request.user, membership.room, user)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"{user.name} now owns the group.")
    return redirect("rooms:settings", membership.room.pk)


@require_POST
def leave_room(request, room_id: int):
    membership = access_membership(request.user, room_id)
    try:
        services.do_leave_room(membership)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect("rooms:settings", membership.room.pk)
    messages.success(request, f"You left {membership.room.title}.")
    return _redirect(request, reverse("rooms:index"))


@require_GET
def sidebar(request):
    """The sidebar alone, for a page that reconnected and may have missed updates."""
    try:
        current = access_membership(request.user, request.GET.get("room")).room
    except Http404:
        current = None
    return render(request, "rooms/_sidebar.html", {"sidebar": sidebar_entries(request.user), "room": current})


@require_POST
def set_muted(request, room_id: int):
    membership = access_membership(request.user, room_id)
    muted = request.POST.get("muted") == "on"
    services.do_set_muted(membership, muted)
    title = room_title(membership.room, request.user, room_members(membership.room))
    messages.success(request, f"{title} is {'muted' if muted else 'unmuted'}.")
    if request.POST.get("next") == "notifications":
        return redirect("rooms:notifications")
    return redirect("rooms:settings", membership.room.pk)


@require_http_methods(["GET", "POST"])
def notification_settings(request):
    if request.method == "POST":
        enabled = request.POST.get("desktop_notifications") == "on"
        do_set_desktop_notifications(request.user, enabled)
        messages.success(request, f"Desktop notifications are {'on' if enabled else 'off'}.")
        return redirect("rooms:notifications")
    return render(request, "rooms/notifications.html", {"sidebar": sidebar_entries(request.user)})


@require_GET
def message_image(request, room_id: int, message_id: int):
    """A message's image, for the room's members only."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    if not message.image or message.is_deleted:
        raise Http404("No image.")
    try:
        handle = message.image.open("rb")
    except FileNotFoundError:
        raise Http404("No image.") from None
    response = FileResponse(handle, content_type="image/webp")
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@require_POST
def set_admin(request, room_id: int):
    """The owner makes a member an admin, or takes it back."""
    membership = _group_owner(request, room_id)
    try:
        member = access_member(membership.room, request.POST.get("user_id"))
        services.do_set_admin(request.user, membership.room, member, request.POST.get("admin") == "on")
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    return redirect("rooms:settings", membership.room.pk)


@require_POST
def set_members_can_invite(request, room_id: int):
    membership = _group_owner(request, room_id)
    services.do_set_members_can_invite(request.user, membership.room, request.POST.get("allowed") == "on")
    return redirect("rooms:settings", membership.room.pk)


# Invite links


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
            messages.success(request, "Invite link created: copy it from the list below.")
            return redirect(f"{reverse('rooms:settings', args=[membership.room.pk])}#invites")
    return _settings_page(request, membership, status=422, invite_form=form)


@require_POST
def revoke_invite(request, room_id: int, invite_id: int):
    membership = access_membership(request.user, room_id)
    invite = Invite.objects.filter(pk=invite_id, room_id=membership.room_id).first()
    if invite is None:
        raise Http404("No such invite link.")
    invites.do_revoke_invite(request.user, invite, membership)
    messages.success(request, "The invite link no longer works.")
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
        message = "Too many invite links that did not work came from your network. Try again in an hour."
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
        messages.success(request, f"You joined {result.room.title}.")
    return redirect(result.room.get_absolute_url())


# Message requests


@require_GET
def requests(request):
    """Direct messages from people I share no room with, waiting for my answer."""
    pending = message_requests(request.user)
    return render(
        request, "rooms/requests.html", {"requests": pending, "sidebar": sidebar_entries(request.user)}
    )


def _pending(request, room_id) -> Membership:
    membership = access_membership(request.user, room_id)
    if membership.request != Membership.Request.PENDING:
        raise Http404("No such request.")
    return membership


@require_POST
def accept_request(request, room_id: int):
    membership = _pending(request, room_id)
    services.do_accept_request(membership)
    return redirect(membership.room.get_absolute_url())


@require_POST
def decline_request(request, room_id: int):
    membership = _pending(request, room_id)
    services.do_decline_request(membership)
    messages.success(request, "Request deleted. They won't be told.")
    return redirect("rooms:requests")


@require_POST
def block_request(request, room_id: int):
    sender = services.do_block_from_request(_pending(request, room_id))
    if sender is not None:
        messages.success(request, f"You blocked {sender.name}. They won't be told.")
    return redirect("rooms:requests")


# Reports


@require_http_methods(["GET", "POST"])
def report_message(request, room_id: int, message_id: int):
    """Report a message in my room to the moderators."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    form = ReportForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                moderation.do_report_message(
                    request.user,
                    membership,
                    message,
                    reason=form.cleaned_data["reason"],
                    text=form.cleaned_data["text"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(
                    request, "Thanks: the moderators will look at it. You'll get a notice when they act."
                )
                return redirect(f"{membership.room.get_absolute_url()}#m-{message.pk}")
        status = 422
    context = {
        "room": membership.room,
        "message": message,
        "form": form,
        "sidebar": sidebar_entries(request.user),
    }
    return render(request, "rooms/report.html", context, status=status)

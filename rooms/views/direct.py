"""Direct conversations: starting one, and answering message requests from strangers."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from rooms import services
from rooms.access import access_pending_request
from rooms.queries import message_requests, sidebar_entries
from rooms.views._common import htmx_redirect


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
        return htmx_redirect(request, other.get_absolute_url())
    return htmx_redirect(request, room.get_absolute_url())


@require_GET
def requests(request):
    """Direct messages from people I share no room with, waiting for my answer."""
    pending = message_requests(request.user)
    return render(
        request, "rooms/requests.html", {"requests": pending, "sidebar": sidebar_entries(request.user)}
    )


@require_POST
def accept_request(request, room_id: int):
    membership = access_pending_request(request.user, room_id)
    services.do_accept_request(membership)
    return redirect(membership.room.get_absolute_url())


@require_POST
def decline_request(request, room_id: int):
    membership = access_pending_request(request.user, room_id)
    services.do_decline_request(membership)
    messages.success(request, _("Request deleted. They won't be told."))
    return redirect("rooms:requests")


@require_POST
def block_request(request, room_id: int):
    sender = services.do_block_from_request(access_pending_request(request.user, room_id))
    if sender is not None:
        messages.success(request, _("You blocked %(name)s. They won't be told.") % {"name": sender.name})
    return redirect("rooms:requests")

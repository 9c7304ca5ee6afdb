"""The rooms list, a room's page and its fragments (older history, composer, sidebar), and the
notification and privacy settings."""

from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from accounts.services import blocked_ids, do_set_desktop_notifications
from rooms import fragments, services
from rooms.access import access_membership, parse_seq
from rooms.grouping import laid_out_html
from rooms.queries import history_after, history_page, sidebar_entries
from rooms.views._common import composer_form, room_context


@require_GET
def index(request):
    return render(request, "rooms/index.html", {"sidebar": sidebar_entries(request.user)})


@require_GET
def room(request, room_id: int):
    membership = access_membership(request.user, room_id, with_assistant=True)
    before = parse_seq(request.GET.get("before")) or None
    # Older pages carry the "New messages" line on until one shows it.
    unread_after = parse_seq(request.GET.get("unread_after"))
    after = parse_seq(request.GET.get("after"))
    if after is not None and after >= membership.room.last_seq and not request.htmx:
        # Nothing comes after it: the room's latest page, as when it is opened.
        after = None
    if request.htmx and "before" in request.GET and not before:
        # A fragment was asked for; a whole page would be swapped into the message list.
        return HttpResponseBadRequest("before: takes the seq of the oldest message shown.")
    if request.htmx and before:
        # Reactions of people I blocked are left out, as on the first page.
        hidden = blocked_ids(request.user)
        page = history_page(membership.room, before=before, unread_after=unread_after, hidden=hidden)
        return render(
            request,
            "rooms/room.html#older",
            {
                "room": membership.room,
                "page": page,
                "page_html": laid_out_html(page, fragments.messages_html(page.messages, request.user)),
            },
        )
    if request.htmx and after is not None:
        # An older window reaching towards the latest messages (static/js/jump.js).
        page = history_after(membership.room, after, hidden=blocked_ids(request.user))
        return render(
            request,
            "rooms/room.html#newer",
            {
                "room": membership.room,
                "page": page,
                "page_html": laid_out_html(page, fragments.messages_html(page.messages, request.user)),
                "newer_only": True,
            },
        )
    if before is None and after is None:
        # Opening a room reads it; do it first so the sidebar shows it read. The line goes
        # where I had read up to before.
        page = history_page(membership.room, unread_after=membership.last_read_seq, reactions=False)
        services.do_mark_read(membership, membership.room.last_seq, shown=page.messages)
    elif after is not None:
        page = history_after(membership.room, after, reactions=False)
    else:
        page = history_page(membership.room, before=before, unread_after=unread_after, reactions=False)
    return render(request, "rooms/room.html", room_context(request, membership, page=page))


@require_GET
def composer(request, room_id: int):
    """The composer alone, e.g. with a reply target chosen."""
    membership = access_membership(request.user, room_id)
    form, reply_to = composer_form(request, membership)
    return render(
        request, "rooms/room.html#composer", {"room": membership.room, "form": form, "reply_to": reply_to}
    )


@require_GET
def sidebar(request):
    """The sidebar alone, for a page that reconnected and may have missed updates."""
    try:
        current = access_membership(request.user, request.GET.get("room")).room
    except Http404:
        current = None
    return render(request, "rooms/_sidebar.html", {"sidebar": sidebar_entries(request.user), "room": current})


@require_http_methods(["GET", "POST"])
def notification_settings(request):
    if request.method == "POST":
        enabled = request.POST.get("desktop_notifications") == "on"
        do_set_desktop_notifications(request.user, enabled)
        messages.success(
            request, _("Desktop notifications are on.") if enabled else _("Desktop notifications are off.")
        )
        return redirect("rooms:notifications")
    return render(request, "rooms/notifications.html", {"sidebar": sidebar_entries(request.user)})


@require_http_methods(["GET", "POST"])
def privacy_settings(request):
    if request.method == "POST":
        enabled = request.POST.get("read_receipts") == "on"
        services.do_set_read_receipts(request.user, enabled)
        messages.success(request, _("Read receipts are on.") if enabled else _("Read receipts are off."))
        return redirect("rooms:privacy")
    return render(request, "rooms/privacy.html", {"sidebar": sidebar_entries(request.user)})

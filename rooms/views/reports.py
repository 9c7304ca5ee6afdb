"""Reporting a message to the moderators."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from rooms.access import access_membership, access_message
from rooms.forms import ReportForm
from rooms.queries import sidebar_entries
from rooms.services import moderation


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

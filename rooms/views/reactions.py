"""Reacting to a message: toggling my emoji (htmx, or a form without JavaScript)."""

from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from rooms import emoji as emoji_data
from rooms.access import access_membership, access_message
from rooms.models import Reaction
from rooms.services.reactions import do_toggle_reaction


@require_http_methods(["GET", "POST"])
def react(request, room_id: int, message_id: int):
    """POST adds my reaction, or takes it back: htmx gets the message's chips, a form a
    redirect to the message. GET is the page without JavaScript: one emoji (a chip's)
    to confirm, or a picker."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    back = f"{membership.room.get_absolute_url()}#m-{message.pk}"
    if request.method == "POST":
        try:
            result = do_toggle_reaction(membership, message, request.POST.get("emoji", ""))
        except ValidationError as exc:
            error = exc.messages[0]
            if request.htmx:
                context = {"message": message, "viewer": request.user, "reaction_error": error}
                return render(request, "rooms/_reactions.html", context, status=422)
            return _react_page(request, message, back, error=error, status=422)
        if request.htmx:
            context = {"message": result.message, "viewer": request.user}
            return render(request, "rooms/_reactions.html", context)
        return redirect(back)
    if message.is_deleted or message.is_system:
        return redirect(back)
    return _react_page(request, message, back)


def _react_page(request, message, back: str, *, error: str = "", status: int = 200):
    chosen = emoji_data.canonical(request.GET.get("emoji"))
    query = request.GET.get("q", "")[:60].strip()
    context = {
        "message": message,
        "cancel_url": back,
        "error": error,
        "chosen": chosen,
        "is_mine": bool(chosen)
        and Reaction.objects.filter(message=message, user=request.user, emoji=chosen).exists(),
        "query": query,
    }
    if not chosen:
        context["quick"] = [emoji_data.find(e) for e in emoji_data.QUICK_REACTIONS]
        context["groups"] = emoji_data.by_group(emoji_data.search(query))
    return render(request, "rooms/react.html", context, status=status)

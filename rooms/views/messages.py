"""A message's own paths: post, show, edit, delete, its image or file, and reading up to it."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rooms import filetypes, fragments, services
from rooms.access import (
    access_membership,
    access_message,
    access_message_at,
    access_own_message,
    can_delete_message,
    parse_seq,
)
from rooms.attachments import FileAttachment, read_upload
from rooms.forms import EditMessageForm, MessageForm
from rooms.queries import history_around, sidebar_entries
from rooms.views._common import reply_target, room_context


@require_POST
def post_message(request, room_id: int):
    if not request.user.is_authenticated or not request.user.is_active:
        raise Http404(_("No such room."))
    form = MessageForm(request.POST, request.FILES)
    membership = None
    if form.is_valid():
        try:
            if form.cleaned_data["file"]:
                # Only a member's upload is read (and a picture re-encoded).
                membership = access_membership(request.user, room_id)
                try:
                    attachment = read_upload(form.cleaned_data["file"])
                except ValidationError as exc:
                    form.add_error("file", exc)
                    raise
                result = services.do_post_message(
                    membership,
                    form.cleaned_data["body"],
                    client_id=form.cleaned_data["client_id"],
                    reply_to_id=form.cleaned_data["reply_to"],
                    image=None if isinstance(attachment, FileAttachment) else attachment,
                    file=attachment if isinstance(attachment, FileAttachment) else None,
                )
            else:
                # Text alone: the membership is checked once, at the room's lock (Http404
                # for anyone who is not a member, as access_membership answers).
                result = services.do_post_message_as(
                    request.user,
                    room_id,
                    form.cleaned_data["body"],
                    client_id=form.cleaned_data["client_id"],
                    reply_to_id=form.cleaned_data["reply_to"],
                )
        except ValidationError as exc:
            if not form.has_error("file"):
                form.add_error("body", exc)
        else:
            if not request.htmx:
                return redirect(f"{reverse('rooms:room', args=[room_id])}#m-{result.message.pk}")
            # The message, as the live event has it already, and the composer left where it
            # is: the page empties it and gives it the next client_id (static/js/composer.js),
            # which costs less than drawing a new one here (docs/protocol.md). A page loaded
            # before it did that (open across a deploy) does not say so: it gets a new composer.
            resets = request.headers.get("Calpico-Composer") == "resets"
            context: dict[str, Any] = {
                "message_html": fragments.for_viewer(
                    fragments.message_html(result.message), result.message, request.user
                )
            }
            if not resets:
                room = result.message.room
                context.update(
                    room=room, form=MessageForm().keep_text_in_page() if room.encrypted else MessageForm()
                )
            response = render(request, "rooms/_posted.html", context)
            if resets:
                response["HX-Reswap"] = "none"
            return response
    # Refused: the composer again, with the text and why.
    if membership is None:
        membership = access_membership(request.user, room_id)
    if membership.room.encrypted:
        form.keep_text_in_page()
    if request.htmx:
        reply_to = reply_target(membership, form.data.get("reply_to"))
        return render(
            request,
            "rooms/room.html#composer",
            {"room": membership.room, "form": form, "reply_to": reply_to},
            status=422,
        )
    return render(request, "rooms/room.html", room_context(request, membership, form=form), status=422)


@require_GET
def message_in_context(request, room_id: int, seq: int):
    """`/r/<room>/m/<seq>/`, where search results, toasts, notifications and reply quotes
    lead: the room page around the message, which it shows highlighted. For htmx, the
    message alone (an edit's Cancel)."""
    membership = access_membership(request.user, room_id)
    try:
        message = access_message_at(membership, seq)
    except Http404:
        # A member may know the room: say what is missing, and lead back to it.
        context = {"room": membership.room, "seq": seq, "sidebar": sidebar_entries(request.user)}
        return render(request, "rooms/no_message.html", context, status=404)
    if request.htmx:
        return render(request, "rooms/_message.html", {"message": message, "viewer": request.user})
    page = history_around(membership.room, message.seq, reactions=False)
    return render(request, "rooms/room.html", room_context(request, membership, page=page, target=message))


@require_http_methods(["GET", "POST"])
def edit_message(request, room_id: int, message_id: int):
    membership = access_membership(request.user, room_id)
    message = access_own_message(request.user, membership, message_id)
    if message.is_encrypted:
        # The server cannot show its text to edit, nor accept a new one in plain text.
        return HttpResponseBadRequest(_("Encrypted messages can't be edited yet."))
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
    if request.method == "GET":
        if message.is_deleted:
            return redirect(back)  # gone already: nothing to ask
        if not can_delete_message(request.user, message, membership):
            raise PermissionDenied(_("You can only delete your own messages."))
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
    # The service refuses (PermissionDenied) anyone `access.can_delete_message` does not allow.
    services.do_delete_message(request.user, message, membership=membership)
    if request.htmx:
        return render(request, "rooms/_message.html", {"message": message, "viewer": request.user})
    return redirect(back)


@require_POST
def mark_read(request, room_id: int):
    membership = access_membership(request.user, room_id)
    seq = parse_seq(request.POST.get("seq"))
    if seq is None:
        return HttpResponse("seq must be a whole number from 0 to 2**63 - 1.", status=400)
    services.do_mark_read(membership, seq)
    return HttpResponse(status=204)


@require_GET
def message_image(request, room_id: int, message_id: int):
    """A message's image, for the room's members only."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    if not message.image or message.is_deleted:
        raise Http404(_("No image."))
    try:
        handle = message.image.open("rb")
    except FileNotFoundError:
        raise Http404(_("No image.")) from None
    response = stream_file(request, handle, content_type="image/webp")
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def message_file(request, room_id: int, message_id: int):
    """A message's file, for the room's members only, always as a download: under its
    cleaned name, with a type no browser renders as a page (rooms.filetypes.served_type)."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    if not message.file or message.is_deleted:
        raise Http404(_("No file."))
    try:
        handle = message.file.open("rb")
    except FileNotFoundError:
        raise Http404(_("No file.")) from None
    response = stream_file(request, handle, content_type=filetypes.served_type(message.file_type))
    response.headers["Content-Disposition"] = filetypes.content_disposition(message.file_name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Opened by itself after all (a bookmarked address, a browser that ignores the
    # disposition), it is an inert document: no script, no plugin, no same-origin access.
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'; sandbox"
    # A deleted message's file must not outlive it in a shared computer's cache.
    response.headers["Cache-Control"] = "private, no-store"
    return response


STREAM_CHUNK_BYTES = 256 * 1024


async def _read_in_chunks(handle: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, STREAM_CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


def stream_file(request, handle: Any, *, content_type: str) -> HttpResponseBase:
    """A stored file as a response that holds one chunk in memory at a time. Under ASGI
    (daphne), Django reads a FileResponse's file, a synchronous iterator, into a list
    whole before sending any of it (and warns); an asynchronous iterator streams it."""
    if not isinstance(request, ASGIRequest):
        return FileResponse(handle, content_type=content_type)  # WSGI: the server's file wrapper
    response = StreamingHttpResponse(_read_in_chunks(handle), content_type=content_type)
    response.headers["Content-Length"] = str(handle.size)
    return response

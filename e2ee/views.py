"""JSON endpoints of the delivery service (docs/e2ee.md, "Server API"), and starting an
encrypted conversation. Access is as for every room: a non-member gets 404."""

import json
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from rooms.access import access_membership
from rooms.models import Message, Room
from rooms.ratelimits import RateLimited
from rooms.services import do_open_direct_room

from . import services
from .models import Device, Group, Handshake, KeyPackage


def _error(message: str, status: int = 400, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _json(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(_("The request body must be JSON."), code="invalid") from None
    if not isinstance(data, dict):
        raise ValidationError(_("The request body must be a JSON object."), code="invalid")
    return data


class DeviceGone(Exception):
    """The browser's device is not (or no longer) one of the person's: it registers again."""


def _own_device(request: HttpRequest, device_id: object) -> Device:
    try:
        pk = uuid.UUID(str(device_id))
    except ValueError:
        raise DeviceGone from None
    device = Device.objects.filter(pk=pk, user=request.user).first()
    if device is None:
        raise DeviceGone
    return device


def _encrypted_room(request: HttpRequest, room_id: int) -> Room:
    room = access_membership(request.user, room_id).room
    if not room.encrypted:
        raise Http404(_("This conversation is not end-to-end encrypted."))
    return room


def _api(view):  # type: ignore[no-untyped-def]
    """Bad input is a 400 with the reason, too often a 429, never a 500."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response: HttpResponse = view(request, *args, **kwargs)
            return response
        except DeviceGone:
            return _error(_("No such device."), 404, device_gone=True)
        except RateLimited as exc:
            response = _error(exc.messages[0], 429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        except ValidationError as exc:
            return _error(exc.messages[0], 400)
        except PermissionDenied as exc:
            return _error(str(exc) or _("You can't do that here."), 403)
        except Http404 as exc:
            return _error(str(exc) or _("Not found."), 404)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _device_json(device: Device) -> dict[str, Any]:
    return {
        "id": str(device.pk),
        "user_id": device.user_id,
        "user_name": device.user.name,
        "label": device.label,
        "signature_key": device.signature_key,
        "created_at": device.created_at.isoformat(),
    }


@require_POST
@_api
def register_device(request: HttpRequest) -> HttpResponse:
    """A new device: {signature_key, label, key_packages: [base64, ...]}."""
    data = _json(request)
    device = services.do_register_device(
        request.user,
        signature_key=data.get("signature_key"),
        label=data.get("label"),
        key_packages=data.get("key_packages"),
    )
    ids = list(device.key_packages.order_by("pk").values_list("pk", flat=True))
    return JsonResponse({"device_id": str(device.pk), "key_package_ids": ids}, status=201)


@require_POST
@_api
def add_key_packages(request: HttpRequest, device_id: str) -> HttpResponse:
    device = _own_device(request, device_id)
    ids = services.do_add_key_packages(device, _json(request).get("key_packages"))
    return JsonResponse({"key_package_ids": ids}, status=201)


@require_POST
@_api
def remove_device(request: HttpRequest, device_id: str) -> HttpResponse:
    services.do_remove_device(_own_device(request, device_id))
    return JsonResponse({"removed": True})


@require_GET
@_api
def room_state(request: HttpRequest, room_id: int) -> HttpResponse:
    """The group's epoch, the members' devices, the commits from `since` on, the newest
    Welcome for `device`, and how many of its key packages are still to be handed out (the
    browser tops up from this count: it cannot know which of its packages were claimed)."""
    room = _encrypted_room(request, room_id)
    device = _own_device(request, request.GET.get("device"))
    try:
        since = max(0, int(request.GET.get("since", "0")))
    except ValueError:
        raise ValidationError(_("“since” must be a whole number."), code="invalid") from None
    group = Group.objects.filter(room=room).first()
    commits = Handshake.objects.filter(room=room, kind=Handshake.Kind.COMMIT, epoch__gte=since).order_by(
        "epoch"
    )
    welcome = (
        Handshake.objects.filter(room=room, kind=Handshake.Kind.WELCOME, recipient=device)
        .order_by("-epoch")
        .first()
    )
    return JsonResponse(
        {
            "group": None if group is None else {"epoch": group.epoch},
            "devices": [_device_json(d) for d in services.room_devices(room)],
            "commits": [{"epoch": c.epoch, "data": c.data} for c in commits[:500]],
            "welcome": None
            if welcome is None
            else {"epoch": welcome.epoch, "data": welcome.data, "key_package_id": welcome.key_package_id},
            "key_packages_left": KeyPackage.objects.filter(device=device, claimed_at__isnull=True).count(),
        }
    )


MESSAGES_PER_FETCH = 500


@require_GET
@_api
def room_messages(request: HttpRequest, room_id: int) -> HttpResponse:
    """The room's encrypted messages after sequence number `after`, oldest first: a device
    decrypts them in order (each key is used once), so none is skipped."""
    room = _encrypted_room(request, room_id)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        raise ValidationError(_("“after” must be a whole number."), code="invalid") from None
    rows = list(
        Message.objects.filter(room=room, kind=Message.Kind.ENCRYPTED, seq__gt=after, deleted_at__isnull=True)
        .order_by("seq")
        .values_list("seq", "author_id", "body")[: MESSAGES_PER_FETCH + 1]
    )
    return JsonResponse(
        {
            "messages": [
                {"seq": seq, "author_id": author, "data": body}
                for seq, author, body in rows[:MESSAGES_PER_FETCH]
            ],
            "more": len(rows) > MESSAGES_PER_FETCH,
        }
    )


@require_POST
@_api
def create_group(request: HttpRequest, room_id: int) -> HttpResponse:
    room = _encrypted_room(request, room_id)
    device = _own_device(request, _json(request).get("device"))
    # Losing the race is an answer, not an error (a browser logs every 4xx as one): the
    # device waits for a Welcome instead.
    if services.do_create_group(room, device):
        return JsonResponse({"created": True, "epoch": 0}, status=201)
    return JsonResponse(
        {"created": False, "error": _("Another device made this conversation's group first.")}
    )


@require_POST
@_api
def claim_key_packages(request: HttpRequest, room_id: int) -> HttpResponse:
    room = _encrypted_room(request, room_id)
    data = _json(request)
    device = _own_device(request, data.get("device"))
    packages = services.do_claim_key_packages(room, device, data.get("device_ids"))
    return JsonResponse(
        {"key_packages": [{"id": p.pk, "device_id": str(p.device_id), "data": p.data} for p in packages]}
    )


@require_POST
@_api
def commit(request: HttpRequest, room_id: int) -> HttpResponse:
    room = _encrypted_room(request, room_id)
    data = _json(request)
    device = _own_device(request, data.get("device"))
    result = services.do_commit(
        room,
        device,
        epoch=data.get("epoch"),
        commit=data.get("commit"),
        welcome=data.get("welcome"),
        key_package_ids=data.get("key_package_ids"),
    )
    if not result.accepted:
        # Another commit came first: apply it and try again (a race, not an error).
        return JsonResponse(
            {
                "accepted": False,
                "epoch": result.epoch,
                "error": _("The group has moved on: apply its new commits first."),
            }
        )
    return JsonResponse({"accepted": True, "epoch": result.epoch}, status=201)


@require_POST
def start(request: HttpRequest, username: str) -> HttpResponse:
    """Open (or make) the encrypted conversation with this person."""
    other = get_object_or_404(User, username__iexact=username)
    try:
        room = do_open_direct_room(request.user, other, encrypted=True)
    except ValidationError as exc:
        return HttpResponse(exc.messages[0], status=400, content_type="text/plain; charset=utf-8")
    except RateLimited as exc:
        return HttpResponse(exc.messages[0], status=429, content_type="text/plain; charset=utf-8")
    return redirect(room)

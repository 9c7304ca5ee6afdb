"""The installable app (manifest, service worker, offline page), this device's
notifications, the notification choices, and the one-click end of missed-message emails."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from notifications import email, services
from notifications.models import PushSubscription

MAX_BODY = 4096


class SignedInRequest(HttpRequest):
    """A request LoginRequiredMiddleware let through: from a signed-in person. For type checking."""

    user: User


@require_GET
@login_not_required
@cache_control(max_age=3600)
def manifest(request: HttpRequest) -> JsonResponse:
    """The web app manifest: what an installed Calpico is called and looks like."""
    icons = [
        {"src": static("icons/calpico-192.png"), "sizes": "192x192", "type": "image/png", "purpose": "any"},
        {"src": static("icons/calpico-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "any"},
        {
            "src": static("icons/calpico-maskable-512.png"),
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        },
    ]
    data = {
        "id": "/",
        "name": "Calpico",
        "short_name": "Calpico",
        "description": _("Group chat with an AI assistant"),
        "start_url": "/rooms/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#4f46e5",
        "icons": icons,
    }
    response = JsonResponse(data, json_dumps_params={"ensure_ascii": False})
    response["Content-Type"] = "application/manifest+json"
    return response


@require_GET
@login_not_required
def service_worker(request: HttpRequest) -> HttpResponse:
    """The service worker, served from the site's root so that its scope is the whole site.
    Never cached by HTTP: browsers look for a new one on every navigation."""
    response = render(
        request,
        "notifications/sw.js",
        {"offline_url": "/offline/", "icon": static("icons/calpico-192.png")},
        content_type="text/javascript; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
@login_not_required
def offline(request: HttpRequest) -> HttpResponse:
    """What the installed app shows when the network is gone (cached by the service worker)."""
    return render(request, "notifications/offline.html")


def _json_body(request: HttpRequest) -> dict | None:
    if len(request.body) > MAX_BODY:
        return None
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@require_POST
def subscribe(request: SignedInRequest) -> JsonResponse:
    """This browser's PushSubscription.toJSON(): notify it when Calpico is closed. With
    `"confirm": true`, only note that a device already listed is still used."""
    data = _json_body(request)
    if data is None:
        return JsonResponse({"error": _("Send the subscription as a JSON object.")}, status=400)
    if data.get("confirm") is True:
        # A page saying the device is still in use: never takes another account's device
        # over, but stops it notifying that account here.
        endpoint = data.get("endpoint")
        keys = data["keys"] if isinstance(data.get("keys"), dict) else {}
        if isinstance(endpoint, str) and services.do_confirm_device(
            request.user, endpoint, keys.get("p256dh"), keys.get("auth")
        ):
            request.session[services.SESSION_ENDPOINT] = endpoint
            return JsonResponse({"confirmed": True})
        # Not listed for this person (signed out and in again, removed elsewhere, or
        # another person's, now forgotten): a routine answer, which the page remembers
        # for the hour like a confirmation.
        # The session has asked: its pages stop asking at every load.
        request.session.setdefault(services.SESSION_ENDPOINT, "")
        return JsonResponse({"confirmed": False})
    keys = data["keys"] if isinstance(data.get("keys"), dict) else {}
    try:
        subscription = services.do_subscribe(
            request.user,
            data.get("endpoint"),
            keys.get("p256dh"),
            keys.get("auth"),
            request.headers.get("User-Agent", ""),
        )
    except ValidationError as exc:
        return JsonResponse({"error": exc.messages[0]}, status=400)
    # Signing out of this session stops this device's notifications (services.signed_out).
    request.session[services.SESSION_ENDPOINT] = subscription.endpoint
    return JsonResponse({"id": subscription.pk, "browser": subscription.browser})


@require_POST
def unsubscribe(request: SignedInRequest) -> JsonResponse:
    """This browser no longer wants notifications (it unsubscribed from its push service)."""
    data = _json_body(request)
    endpoint = data.get("endpoint") if data else None
    if not isinstance(endpoint, str):
        return JsonResponse({"error": _("Send the endpoint to forget.")}, status=400)
    return JsonResponse({"removed": services.do_unsubscribe(request.user, endpoint)})


@require_POST
def remove_device(request: SignedInRequest, subscription_id: int) -> HttpResponse:
    if services.do_remove_device(request.user, subscription_id):
        messages.success(request, _("That device will not be notified any more."))
    return redirect("rooms:notifications")


@require_POST
def choices(request: SignedInRequest) -> HttpResponse:
    """Show message text in notifications; email me what I missed."""
    user = request.user
    wants_email = request.POST.get("email_missed") == "on"
    if wants_email and email.verified_address(user) is None:
        messages.error(request, _("Verify an email address first: missed messages are only sent to one."))
        wants_email = False
    services.do_set_notification_choices(
        user, show_text=request.POST.get("push_show_text") == "on", email_missed=wants_email
    )
    messages.success(request, _("Your notification choices are saved."))
    return redirect("rooms:notifications")


@csrf_exempt  # RFC 8058: mail programs post here, with the signed token as the only proof
@login_not_required
@require_http_methods(["GET", "POST"])
def stop_missed_email(request: HttpRequest, token: str) -> HttpResponse:
    """The link in every missed-messages email. GET asks (link checkers open links); POST,
    from the page's button or a mail program's one-click, turns the emails off."""
    user: User | None = email.user_for_token(token)
    if user is None:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    done = False
    if request.method == "POST":
        services.do_stop_missed_email(user)
        done = True
    return render(request, "notifications/unsubscribe.html", {"done": done, "token": token})


def device_list(user: User) -> list[PushSubscription]:
    return list(user.push_subscriptions.order_by("-last_used_at"))

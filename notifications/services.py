"""Changing what a person is notified of: their devices and their choices."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from calpico.languages import format_names
from notifications.models import PushSubscription
from notifications.push import allowed_endpoint

MAX_DEVICES = 20


def _b64url(value: object) -> bytes | None:
    if not isinstance(value, str) or len(value) > 200:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def check_subscription(endpoint: object, p256dh: object, auth: object) -> tuple[str, str, str]:
    """What a browser's PushSubscription.toJSON() gave, checked: an endpoint of a push
    service the server may post to, the browser's P-256 public key and its 16-byte secret.
    Raises ValidationError otherwise."""
    if not isinstance(endpoint, str) or not allowed_endpoint(endpoint):
        raise ValidationError(_("That push service is not one this server sends to."), code="endpoint")
    key = _b64url(p256dh)
    secret = _b64url(auth)
    if key is None or len(key) != 65 or secret is None or len(secret) != 16:
        raise ValidationError(_("The browser's keys for notifications are not valid."), code="keys")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    except ValueError:
        raise ValidationError(_("The browser's keys for notifications are not valid."), code="keys") from None
    return endpoint, str(p256dh), str(auth)


def do_subscribe(
    user: User, endpoint: object, p256dh: object, auth: object, user_agent: str
) -> PushSubscription:
    """Notify this device when Calpico is closed (or, for a device already listed, note that
    it was used now). A browser's endpoint belongs to whoever subscribed with it last."""
    endpoint, p256dh, auth = check_subscription(endpoint, p256dh, auth)
    with transaction.atomic():
        existing = PushSubscription.objects.select_for_update().filter(endpoint=endpoint).first()
        if existing is None and user.push_subscriptions.count() >= MAX_DEVICES:
            raise ValidationError(
                _("You have %(count)d devices with notifications on; remove one first.")
                % {"count": MAX_DEVICES},
                code="too_many",
            )
        subscription, _created = PushSubscription.objects.update_or_create(
            endpoint=endpoint,
            defaults={
                "user": user,
                "p256dh": p256dh,
                "auth": auth,
                "user_agent": user_agent[:300],
                "last_used_at": timezone.now(),
            },
        )
    return subscription


def _stored_text(value: object, limit: int) -> str | None:
    """`value` if it is a string a column of `limit` characters could hold (PostgreSQL
    stores no NUL character): what a page sent is looked up only then."""
    if isinstance(value, str) and len(value) <= limit and "\x00" not in value:
        return value
    return None


def do_confirm_device(user: User, endpoint: object, p256dh: object = None, auth: object = None) -> bool:
    """A page on this device was opened: it is still used ("last used" in the device list).

    A browser notifies only the person signed in on it. A device listed for someone else
    (their session expired or their cookies were cleared, and `user` signed in on the same
    browser without signing them out) stops being notified: its row is deleted, never taken
    over (`user` did not ask for notifications). Only a page holding the subscription's keys,
    which the browser and this server alone know, can do that; the endpoint alone is not
    enough. False unless the device is listed for `user`."""
    endpoint, p256dh, auth = (
        _stored_text(endpoint, 1000),
        _stored_text(p256dh, 200),
        _stored_text(auth, 100),
    )
    if endpoint is None:
        return False
    if PushSubscription.objects.filter(user=user, endpoint=endpoint).update(last_used_at=timezone.now()):
        return True
    if p256dh is not None and auth is not None:
        others = PushSubscription.objects.exclude(user=user)
        others.filter(endpoint=endpoint, p256dh=p256dh, auth=auth).delete()
    return False


# The session remembers the device it was used on (set when the page subscribes or
# confirms the device): signing out stops that device's notifications, so whoever uses a
# shared browser next does not see the last person's messages.
SESSION_ENDPOINT = "push_endpoint"


def signed_out(sender: object, request: HttpRequest | None, user: User | None, **kwargs: object) -> None:
    """django.contrib.auth's user_logged_out: sent before the session is flushed."""
    if request is None or user is None or not hasattr(request, "session"):
        return
    endpoint = request.session.get(SESSION_ENDPOINT)
    if isinstance(endpoint, str):
        do_unsubscribe(user, endpoint)


def do_remove_other_devices(user: User, keep: str | None) -> int:
    """The person's devices stop being notified, but for the one whose endpoint is `keep`
    (the browser that changed the password); how many were removed."""
    devices = PushSubscription.objects.filter(user=user)
    if keep:
        devices = devices.exclude(endpoint=keep)
    _total, kinds = devices.delete()
    return kinds.get(PushSubscription._meta.label, 0)


def _this_browsers_device(request: HttpRequest | None, user: User) -> str | None:
    """The endpoint this browser's session subscribed or confirmed with, if it is `user`'s."""
    if request is None or not hasattr(request, "session") or getattr(request.user, "pk", None) != user.pk:
        return None
    endpoint = request.session.get(SESSION_ENDPOINT)
    return endpoint if isinstance(endpoint, str) and endpoint else None


def password_changed(sender: object, request: HttpRequest | None, user: User, **kwargs: object) -> None:
    """allauth's password_changed and password_set, and accounts' password_set_by_admin:
    Django has ended the account's other sessions, and their devices stop being notified
    too (whoever held a session the password change meant to end must not keep reading
    the person's notifications). The browser that changed it keeps its own device."""
    keep = _this_browsers_device(request, user)
    removed = do_remove_other_devices(user, keep)
    if not removed or request is None:
        return
    if getattr(request.user, "pk", None) == user.pk:
        messages.info(request, _("Notifications were turned off on your other devices."), fail_silently=True)
    else:
        # A staff member setting someone's password in the admin.
        text = format_names(_("Notifications were turned off on the devices of %(name)s."), name=user.name)
        messages.info(request, text, fail_silently=True)


def password_reset(sender: object, request: HttpRequest | None, user: User, **kwargs: object) -> None:
    """allauth's password_reset: whoever reset it proved only the email address, and no
    session of the account is kept (rooms.live), nor any device."""
    if do_remove_other_devices(user, None) and request is not None:
        messages.info(request, _("Notifications were turned off on all your devices."), fail_silently=True)


def do_unsubscribe(user: User, endpoint: object) -> bool:
    """This device stops being notified; False if it was not listed for this person."""
    endpoint = _stored_text(endpoint, 1000)
    if endpoint is None:
        return False
    deleted, _kinds = PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()
    return bool(deleted)


def do_remove_device(user: User, subscription_id: int) -> bool:
    deleted, _kinds = PushSubscription.objects.filter(user=user, pk=subscription_id).delete()
    return bool(deleted)


def do_set_notification_choices(user: User, *, show_text: bool, email_missed: bool) -> None:
    user.push_show_text = show_text
    user.email_missed = email_missed
    user.save(update_fields=["push_show_text", "email_missed"])


def do_stop_missed_email(user: User) -> None:
    user.email_missed = False
    user.save(update_fields=["email_missed"])

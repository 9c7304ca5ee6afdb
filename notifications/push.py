"""Sending one notification to one device through its push service (RFC 8030), the payload
encrypted to the browser's keys (RFC 8291, aes128gcm) and signed for with the server's
VAPID key (RFC 8292). Called by the `notifications.push` job (notifications/jobs.py)."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from pywebpush import WebPusher

from notifications import vapid
from notifications.models import PushSubscription

log = logging.getLogger(__name__)


class PushServiceBusy(Exception):
    """The push service answered 429 or 5xx (or not at all): try again later."""


def allowed_endpoint(endpoint: str) -> bool:
    """An endpoint the server may post to: https on a known push service (PUSH_SERVICE_HOSTS,
    a host or a domain it ends in), never an address of its own network unless listed."""
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return False
    # A push service's address has no space or control character (nor a NUL, which
    # PostgreSQL cannot store).
    if not host or len(endpoint) > 1000 or any(c <= " " or c == "\x7f" for c in endpoint):
        return False
    listed = any(host == allowed or host.endswith("." + allowed) for allowed in settings.PUSH_SERVICE_HOSTS)
    if not listed:
        return False
    try:
        local = not ipaddress.ip_address(host).is_global
    except ValueError:
        local = False
    # A loopback push service is one a test or a developer runs: plain http is allowed there.
    return parts.scheme == "https" or (parts.scheme == "http" and local)


_local = threading.local()


class _NoRedirects(requests.Session):
    """Only the endpoint's host was checked (allowed_endpoint): a redirect would have the
    server post to one nobody checked, its own network for instance. A push service
    answering 3xx is refused like a 4xx."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        return super().request(*args, **kwargs)


def _session() -> requests.Session:
    """One HTTP session per thread: connections to a push service are kept and reused."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = _NoRedirects()
    return session


def send(subscription: PushSubscription, notification: dict[str, Any], *, topic: str = "") -> int:
    """Post the notification to the device's push service; returns the status code.
    Raises PushServiceBusy for an answer worth retrying."""
    headers = {**vapid.authorization(subscription.endpoint), "Urgency": "high"}
    if topic:
        # The push service keeps only the newest undelivered push of a topic (RFC 8030 5.4).
        headers["Topic"] = topic[:32]
    pusher = WebPusher(
        {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        },
        requests_session=_session(),
    )
    data = json.dumps(notification, ensure_ascii=False).encode()
    try:
        response = pusher.send(
            data,
            headers,
            ttl=settings.PUSH_TTL_SECONDS,
            content_encoding="aes128gcm",
            timeout=settings.PUSH_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise PushServiceBusy(f"{type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if status == 429 or status >= 500:
        raise PushServiceBusy(f"The push service answered {status}.")
    return status

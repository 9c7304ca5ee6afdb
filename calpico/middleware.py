import functools
import ipaddress
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation

from calpico import languages

# No inline script anywhere: every script is a file under static/. htmx's own inline
# indicator styles are turned off in base.html, so styles can be 'self' too.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class UserLanguageMiddleware:
    """A signed-in person's chosen language (User.language) over the browser's, which
    LocaleMiddleware has activated ('' follows the browser), and their browser's time zone
    (User.time_zone) for the dates the server writes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        language = getattr(user, "language", "") if signed_in else ""
        if language and language in dict(settings.LANGUAGES):
            translation.activate(language)
            request.LANGUAGE_CODE = language
        languages.mark_in_use(translation.get_language())
        zone = time_zone(getattr(user, "time_zone", "") if signed_in else "")
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        return self.get_response(request)


def time_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of that IANA name, or None for '' or a name this system does not know."""
    if not name or name not in _zone_names():
        return None
    return zoneinfo.ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# Headers only a proxy may set: from anyone else they are dropped before Django reads them.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_REAL_IP")


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[::1]:port", as some proxies write it
        value = value[1 : value.index("]")]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def trusted_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in settings.TRUSTED_PROXIES]


def client_address(
    meta: dict[str, Any], networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The address of whoever made the request: the peer, or behind a trusted proxy the
    nearest address in X-Forwarded-For that no trusted proxy has, read from the right
    (the left part of the header is whatever the client sent, and proves nothing)."""
    peer = meta.get("REMOTE_ADDR", "")

    def trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in networks)

    peer_address = _address(peer)
    if peer_address is None or not trusted(peer_address):
        return peer
    forwarded = [part for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for part in reversed(forwarded):
        address = _address(part)
        if address is None:
            break  # a proxy we trust wrote something that is no address: go no further
        if not trusted(address):
            return str(address)
    return peer


class TrustedProxyMiddleware:
    """Behind a reverse proxy, the client's address and scheme as the proxy saw them.

    `REMOTE_ADDR` becomes the client's address (`client_address`) when the request came from
    one of `TRUSTED_PROXIES` (the peer's own address is kept in `CALPICO_PEER_ADDR`), so
    rate limits, ours and allauth's, count the visitor, not the proxy. A request from any
    other address loses its X-Forwarded-* headers here, before SecurityMiddleware reads
    X-Forwarded-Proto (`SECURE_PROXY_SSL_HEADER`): nobody but a trusted proxy can claim
    HTTPS or an address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.networks = trusted_networks()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        peer = meta.get("REMOTE_ADDR", "")
        meta["CALPICO_PEER_ADDR"] = peer
        peer_address = _address(peer)
        if peer_address is not None and any(peer_address in network for network in self.networks):
            meta["REMOTE_ADDR"] = client_address(meta, self.networks)
        else:
            for header in PROXY_HEADERS:
                meta.pop(header, None)
        return self.get_response(request)
